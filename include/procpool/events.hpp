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

/// The kinds of PoolEvent.
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
  /// A worker's memory right after start-up already exceeds memory_soft_limit (reported once per
  /// pool).
  above_soft_limit_at_start,
  /// The restart-storm breaker tripped, or healed.
  degraded,
  recovered,
  /// The kernel's OOM killer ended a worker; `message` says which memory limit was reached.
  /// Followed by the worker's `exited` event (reason RecycleReason::oom_kill).
  oom_kill,
};

/// A stable lower_snake_case name for `type` ("spawned", "exited", ...). Never throws.
PROCPOOL_API std::string_view to_string(EventType type) noexcept;

/// One lifecycle event of a pool, given to PoolOptions::on_event. Fields that do not apply to the
/// event's type are empty (or 0).
struct PoolEvent {
  /// What happened.
  EventType type = EventType::spawned;
  /// The pool-local id of the worker concerned (WorkerStats::id); 0 for pool-wide events.
  std::uint64_t worker_id = 0;
  /// That worker's process id; 0 if it has none (yet) or for pool-wide events.
  int pid = 0;
  /// Why the worker is retiring or left (retiring, exited).
  std::optional<RecycleReason> reason;
  /// The worker's exit code, if it exited (exited).
  std::optional<int> exit_code;
  /// The signal that ended the worker, if one did (exited).
  std::optional<int> signal;
  /// The job that failed (job_failed).
  std::string job_name;
  /// How that job failed (job_failed).
  std::optional<ErrorKind> error;
  /// The same text the log line carries.
  std::string message;
};

/// Receives every PoolEvent, on the supervisor thread while it holds the pool's state lock. Same
/// rules as LogSink: keep it short and call no method of the same Pool (stats() would deadlock).
/// Exceptions are caught and logged.
using EventCallback = std::function<void(const PoolEvent&)>;

}  // namespace procpool
