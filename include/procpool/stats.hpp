// Stats: a consistent snapshot of a pool and its workers.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "procpool/error.hpp"
#include "procpool/export.hpp"
#include "procpool/worker_state.hpp"

namespace procpool {

/// Number of ErrorKind values (for arrays indexed by kind).
inline constexpr std::size_t error_kind_count =
    static_cast<std::size_t>(ErrorKind::deadline_exceeded) + 1;

/// Whether the pool can run jobs.
enum class PoolHealth {
  healthy,
  /// Workers keep crashing or failing to start (the restart-storm breaker tripped); submit fails
  /// fast with ErrorKind::pool_degraded.
  degraded,
  /// shutdown() began; submit fails with ErrorKind::shutting_down. Also what a fork of the host
  /// reports (Pool::stats), where submit fails with ErrorKind::invalid_request.
  stopped,
};

/// A stable lower_snake_case name for `health` ("healthy", "degraded", "stopped"). Never throws.
PROCPOOL_API std::string_view to_string(PoolHealth health) noexcept;

/// One worker process.
struct WorkerStats {
  /// Pool-local id, unique for the pool's lifetime.
  std::uint64_t id = 0;
  /// Its process id; 0 while it is starting with StartMode::fork_server and the fork server has
  /// not yet reported the fork.
  int pid = 0;
  /// Where it is in its life (starting, idle, busy, retiring, ...).
  WorkerState state = WorkerState::starting;
  /// Jobs it has finished, successfully or not.
  std::uint64_t jobs_done = 0;
  /// The name of the job it is running, if any.
  std::optional<std::string> current_job;
  /// How long the current job has been running; 0 when there is none.
  std::chrono::milliseconds current_job_running_for{0};
  /// Time since its last job finished (or since it became ready); 0 while busy.
  std::chrono::milliseconds idle_for{0};
  /// Time since the process was started.
  std::chrono::milliseconds age{0};
  /// Resident set size at the last reading (after its last job, at a sample, or at ready).
  std::uint64_t rss_bytes = 0;
  /// The largest rss_bytes seen for this worker.
  std::uint64_t peak_rss_bytes = 0;
  /// The figure the recycle limits use (RecyclePolicy::memory_metric; equals rss_bytes for rss).
  std::uint64_t memory_bytes = 0;
  /// Memory after RecyclePolicy::baseline_after_jobs jobs, once reached.
  std::optional<std::uint64_t> baseline_bytes;
  /// Growth since the baseline per job: how fast this worker leaks.
  double growth_bytes_per_job = 0;
  /// Growth since the baseline per minute of the worker's age.
  double growth_bytes_per_minute = 0;
  /// Why the worker this one replaced left; empty for the pool's first workers.
  std::optional<RecycleReason> predecessor_reason;
  /// Why it is retiring or stopping, while it is.
  std::optional<RecycleReason> leaving_reason;
};

/// Figures per job name: which job is slow, and which one leaks.
struct JobStats {
  /// The job name, or "(other)" for the names past the first 256.
  std::string name;
  /// Jobs of this name that a worker completed successfully.
  std::uint64_t completed = 0;
  /// Jobs of this name that failed after reaching a worker.
  std::uint64_t failed = 0;
  /// Median latency from dispatch to outcome, over the most recent jobs (up to 1024), in ms.
  double latency_p50_ms = 0;
  /// 99th percentile of the same latencies, in milliseconds.
  double latency_p99_ms = 0;
  /// Mean change in the worker's memory across one job of this name (after minus before), over
  /// the jobs that completed. A steadily positive mean is a leak. Jobs read together
  /// (RecyclePolicy::memory_read_min_interval) count with their reading's change shared out.
  double memory_delta_mean_bytes = 0;
  /// The largest such change seen; for jobs read together, their share.
  std::int64_t memory_delta_max_bytes = 0;
};

/// What keeps the workers' memory in bounds (docs/memory.md).
enum class MemoryEnforcement {
  /// The recycle limits alone, compared against readings after jobs and at samples.
  sampled,
  /// As well, each worker in a memory cgroup of its own that the kernel caps (cgroup v1).
  cgroup_v1,
  /// As well, each worker in a memory cgroup of its own that the kernel caps (cgroup v2).
  cgroup_v2,
};

/// A stable lower_snake_case name for `enforcement` ("sampled", "cgroup_v1", "cgroup_v2"). Never
/// throws.
PROCPOOL_API std::string_view to_string(MemoryEnforcement enforcement) noexcept;

/// How the pool keeps its workers' memory, and so the host's, in bounds.
struct MemoryStats {
  /// Sampled limits alone, or kernel caps on each worker as well (PoolOptions::worker_cgroups).
  MemoryEnforcement enforcement = MemoryEnforcement::sampled;
  /// With kernel caps: the pool's cgroup directory, which holds one cgroup per worker.
  std::string worker_cgroups;
  /// With kernel caps: each worker's cap in bytes.
  std::uint64_t worker_cap_bytes = 0;
  /// Workers' oom_score_adj (PoolOptions::worker_oom_score_adj; 0: the host's, unchanged).
  int worker_oom_score_adj = 0;
  /// The pool memory budget in bytes (PoolOptions::memory_budget); 0: none.
  std::uint64_t budget_bytes = 0;
  /// What the workers hold against the budget now: each worker's memory, or while it has jobs,
  /// its memory when it was given them plus their expected peaks if that is more.
  std::uint64_t budget_in_use_bytes = 0;
  /// Jobs that waited for memory under the budget before they ran (each counted once).
  std::uint64_t jobs_held_for_memory = 0;
  /// Whether the job at the head of the queue is waiting for memory now.
  bool holding_job_for_memory = false;
  /// Jobs failed at once because their expected peak alone exceeded the budget (also counted in
  /// failures(ErrorKind::memory_limit)).
  std::uint64_t jobs_over_budget = 0;
};

/// A whole pool. Worker and queue figures are taken together under the supervisor's locks; the job
/// counters are atomics read at the same moment and may be a few jobs ahead of them.
struct PoolStats {
  /// Whether the pool runs jobs normally, is degraded by a restart storm, or has stopped.
  PoolHealth health = PoolHealth::healthy;
  /// Every live worker process, including those starting and retiring.
  std::vector<WorkerStats> workers;
  /// Jobs waiting for a worker.
  std::size_t queued = 0;
  /// Jobs sent to a worker and not yet finished.
  std::size_t in_flight = 0;
  /// Every job submit accepted or rejected.
  std::uint64_t submitted = 0;
  /// Jobs whose outcome was a result.
  std::uint64_t succeeded = 0;
  /// Jobs whose outcome was a JobError, of any kind (rejections included).
  std::uint64_t failed = 0;
  /// failed, broken down by ErrorKind (index with static_cast<std::size_t>(kind)).
  std::array<std::uint64_t, error_kind_count> failed_by_kind{};
  /// Attempts that were retried (idempotent jobs after a crash, timeout or memory kill).
  std::uint64_t retries = 0;
  /// Worker processes started since the pool was constructed.
  std::uint64_t workers_started = 0;
  /// Worker processes that ended and were reaped.
  std::uint64_t workers_exited = 0;
  /// Workers that died or were killed before reporting ready, and spawn calls that failed.
  std::uint64_t start_failures = 0;
  /// Entries the supervisor holds for unfinished jobs across all its tables. 0 when the pool is
  /// idle: anything else is a leak.
  std::size_t tracked_jobs = 0;
  /// Workers that left, by reason (index with static_cast<std::size_t>(reason)).
  std::array<std::uint64_t, recycle_reason_count> recycles_by_reason{};
  /// Per job name, sorted by name (at most 256 names; later ones are counted under "(other)").
  std::vector<JobStats> jobs;
  /// The configured lower bound on workers (PoolOptions::min_workers).
  std::size_t min_workers = 0;
  /// The configured upper bound on workers (PoolOptions::workers).
  std::size_t max_workers = 0;
  /// How workers' memory is kept in bounds (sampled limits, kernel caps). Workers the kernel's OOM
  /// killer ended are recycles(RecycleReason::oom_kill).
  MemoryStats memory;

  /// How many workers left for `reason`.
  std::uint64_t recycles(RecycleReason reason) const noexcept {
    return recycles_by_reason[static_cast<std::size_t>(reason)];
  }

  /// How many jobs failed with `kind`.
  std::uint64_t failures(ErrorKind kind) const noexcept {
    return failed_by_kind[static_cast<std::size_t>(kind)];
  }
};

}  // namespace procpool
