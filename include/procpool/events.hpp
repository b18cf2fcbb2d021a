// Lifecycle events: what happens to workers and jobs, as structured values.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "procpool/error.hpp"
#include "procpool/export.hpp"
#include "procpool/stats.hpp"

namespace procpool {

enum class EventType {
  /// A worker process was started (pid known).
  spawned,
  /// A worker attached and can take jobs.
  ready,
  /// A policy retired a worker; `reason` says which.
  retiring,
  /// A worker process ended; `reason`, and `exit_code` or `signal`.
  exited,
  /// A job failed; `error` and `job_name`.
  job_failed,
  /// A worker's memory right after start-up already exceeds rss_soft_limit (reported once per
  /// pool).
  above_soft_limit_at_start,
  /// The restart-storm breaker tripped, or healed.
  degraded,
  recovered,
};

PROCPOOL_API std::string_view to_string(EventType type) noexcept;

struct PoolEvent {
  EventType type = EventType::spawned;
  std::uint64_t worker_id = 0;
  int pid = 0;
  std::optional<RecycleReason> reason;
  std::optional<int> exit_code;
  std::optional<int> signal;
  std::string job_name;
  std::optional<ErrorKind> error;
  /// The same text the log line carries.
  std::string message;
};

/// Receives every PoolEvent, on the supervisor thread while it holds the pool's state lock. Same
/// rules as LogSink: keep it short and call no method of the same Pool (stats() would deadlock).
/// Exceptions are caught and logged.
using EventCallback = std::function<void(const PoolEvent&)>;

}  // namespace procpool
