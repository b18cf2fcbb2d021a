// WorkerState and RecycleReason: where a worker is in its life, and why it left. Used by the stats
// (stats.hpp) and the events (events.hpp).
#pragma once

#include <cstddef>
#include <string_view>

#include "procpool/export.hpp"

namespace procpool {

/// Where a worker is in its life.
enum class WorkerState {
  /// Spawned, not yet attached and ready.
  starting,
  /// Ready, no job.
  idle,
  /// Running a job.
  busy,
  /// A policy retired it: it takes no new job and leaves after its current one.
  retiring,
  /// Asked to exit or being killed (a retired idle worker, timeout, protocol violation, hard
  /// memory limit, start timeout, shutdown); gets no new jobs.
  stopping,
};

/// A stable lower_snake_case name for `state` ("idle", "busy", ...). Never throws.
PROCPOOL_API std::string_view to_string(WorkerState state) noexcept;

/// Why a worker left (and so why its successor was started). Stable: values are only added.
enum class RecycleReason {
  /// Ran RecyclePolicy::max_jobs jobs.
  max_jobs,
  /// Reached RecyclePolicy::max_lifetime.
  max_lifetime,
  /// Idle past RecyclePolicy::idle_timeout: replaced by a fresh worker.
  idle_timeout,
  /// Idle past idle_timeout while the pool had more than min_workers: stopped, not replaced.
  scale_down,
  /// A job left it above RecyclePolicy::memory_soft_limit: retired after that job.
  memory_soft_limit,
  /// Above RecyclePolicy::memory_hard_limit: killed at once, its job failed with memory_limit.
  memory_hard_limit,
  /// Grew more than RecyclePolicy::memory_growth_limit over its own baseline.
  memory_growth,
  /// Its job ran past its timeout or its deadline: stopped (SIGTERM, grace, SIGKILL).
  job_timeout,
  /// Died on its own, with or without a job.
  crash,
  /// Died or hung before reporting ready.
  start_failure,
  /// Wrote something the supervisor could not accept to the shared segment: killed.
  protocol_violation,
  /// The pool shut down.
  shutdown,
  /// The kernel's OOM killer ended it (its memory cgroup, the host's, or the machine ran out):
  /// its job failed with memory_limit (or is retried, if idempotent).
  oom_kill,
  /// Idle while a job waited for the pool memory budget, with the pool above min_workers: stopped,
  /// not replaced, to give its memory back.
  memory_budget,
  /// Its job was cancelled while it ran (CancelMode::kill, or CancelMode::interrupt past
  /// PoolOptions::kill_grace): killed and replaced, not counted as a crash.
  job_cancelled,
};

/// Number of RecycleReason values (for arrays indexed by reason).
inline constexpr std::size_t recycle_reason_count =
    static_cast<std::size_t>(RecycleReason::job_cancelled) + 1;

/// A stable lower_snake_case name for `reason` ("max_jobs", "memory_soft_limit", ...). Never
/// throws.
PROCPOOL_API std::string_view to_string(RecycleReason reason) noexcept;

}  // namespace procpool
