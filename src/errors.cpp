#include "procpool/error.hpp"
#include "procpool/stats.hpp"

namespace procpool {

std::string_view to_string(ErrorKind kind) noexcept {
  switch (kind) {
    case ErrorKind::handler_error:
      return "handler_error";
    case ErrorKind::worker_crashed:
      return "worker_crashed";
    case ErrorKind::timeout:
      return "timeout";
    case ErrorKind::memory_limit:
      return "memory_limit";
    case ErrorKind::cancelled:
      return "cancelled";
    case ErrorKind::queue_full:
      return "queue_full";
    case ErrorKind::shutting_down:
      return "shutting_down";
    case ErrorKind::unknown_job:
      return "unknown_job";
    case ErrorKind::payload_too_large:
      return "payload_too_large";
    case ErrorKind::protocol_violation:
      return "protocol_violation";
    case ErrorKind::pool_degraded:
      return "pool_degraded";
    case ErrorKind::invalid_request:
      return "invalid_request";
    case ErrorKind::codec_error:
      return "codec_error";
  }
  return "unknown";
}

std::string_view to_string(WorkerState state) noexcept {
  switch (state) {
    case WorkerState::starting:
      return "starting";
    case WorkerState::idle:
      return "idle";
    case WorkerState::busy:
      return "busy";
    case WorkerState::stopping:
      return "stopping";
  }
  return "unknown";
}

std::string_view to_string(PoolHealth health) noexcept {
  switch (health) {
    case PoolHealth::healthy:
      return "healthy";
    case PoolHealth::degraded:
      return "degraded";
    case PoolHealth::stopped:
      return "stopped";
  }
  return "unknown";
}

ConfigError::ConfigError(std::string field, const std::string& message)
    : std::invalid_argument("procpool: invalid " + field + ": " + message),
      field_(std::move(field)) {}

}  // namespace procpool
