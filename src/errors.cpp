// Names of the public enums, and ConfigError.
#include "procpool/error.hpp"
#include "procpool/events.hpp"
#include "procpool/stats.hpp"

namespace procpool {

// clang-format off
std::string_view to_string(ErrorKind kind) noexcept {
  switch (kind) {
    case ErrorKind::handler_error: return "handler_error";
    case ErrorKind::worker_crashed: return "worker_crashed";
    case ErrorKind::timeout: return "timeout";
    case ErrorKind::memory_limit: return "memory_limit";
    case ErrorKind::cancelled: return "cancelled";
    case ErrorKind::queue_full: return "queue_full";
    case ErrorKind::shutting_down: return "shutting_down";
    case ErrorKind::unknown_job: return "unknown_job";
    case ErrorKind::payload_too_large: return "payload_too_large";
    case ErrorKind::protocol_violation: return "protocol_violation";
    case ErrorKind::pool_degraded: return "pool_degraded";
    case ErrorKind::invalid_request: return "invalid_request";
    case ErrorKind::codec_error: return "codec_error";
    case ErrorKind::deadline_exceeded: return "deadline_exceeded";
  }
  return "unknown";
}

std::string_view to_string(WorkerState state) noexcept {
  switch (state) {
    case WorkerState::starting: return "starting";
    case WorkerState::idle: return "idle";
    case WorkerState::busy: return "busy";
    case WorkerState::retiring: return "retiring";
    case WorkerState::stopping: return "stopping";
  }
  return "unknown";
}

std::string_view to_string(RecycleReason reason) noexcept {
  switch (reason) {
    case RecycleReason::max_jobs: return "max_jobs";
    case RecycleReason::max_lifetime: return "max_lifetime";
    case RecycleReason::idle_timeout: return "idle_timeout";
    case RecycleReason::scale_down: return "scale_down";
    case RecycleReason::memory_soft_limit: return "memory_soft_limit";
    case RecycleReason::memory_hard_limit: return "memory_hard_limit";
    case RecycleReason::memory_growth: return "memory_growth";
    case RecycleReason::job_timeout: return "job_timeout";
    case RecycleReason::crash: return "crash";
    case RecycleReason::start_failure: return "start_failure";
    case RecycleReason::protocol_violation: return "protocol_violation";
    case RecycleReason::shutdown: return "shutdown";
    case RecycleReason::oom_kill: return "oom_kill";
    case RecycleReason::memory_budget: return "memory_budget";
    case RecycleReason::job_cancelled: return "job_cancelled";
  }
  return "unknown";
}

std::string_view to_string(EventType type) noexcept {
  switch (type) {
    case EventType::spawned: return "spawned";
    case EventType::ready: return "ready";
    case EventType::retiring: return "retiring";
    case EventType::exited: return "exited";
    case EventType::job_failed: return "job_failed";
    case EventType::above_soft_limit_at_start: return "above_soft_limit_at_start";
    case EventType::degraded: return "degraded";
    case EventType::recovered: return "recovered";
    case EventType::oom_kill: return "oom_kill";
  }
  return "unknown";
}

std::string_view to_string(MemoryEnforcement enforcement) noexcept {
  switch (enforcement) {
    case MemoryEnforcement::sampled: return "sampled";
    case MemoryEnforcement::cgroup_v1: return "cgroup_v1";
    case MemoryEnforcement::cgroup_v2: return "cgroup_v2";
  }
  return "unknown";
}

std::string_view to_string(PoolHealth health) noexcept {
  switch (health) {
    case PoolHealth::healthy: return "healthy";
    case PoolHealth::degraded: return "degraded";
    case PoolHealth::stopped: return "stopped";
  }
  return "unknown";
}
// clang-format on

ConfigError::ConfigError(std::string field, const std::string& message)
    : std::invalid_argument("procpool: invalid " + field + ": " + message),
      field_(std::move(field)) {}

}  // namespace procpool
