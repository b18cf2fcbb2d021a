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

namespace procpool {

/// Number of ErrorKind values (for arrays indexed by kind).
inline constexpr std::size_t error_kind_count =
    static_cast<std::size_t>(ErrorKind::codec_error) + 1;

/// Where a worker is in its life.
enum class WorkerState {
  /// Spawned, not yet attached and ready.
  starting,
  /// Ready, no job.
  idle,
  /// Running a job.
  busy,
  /// Being stopped (timeout, protocol violation, shutdown); gets no new jobs.
  stopping,
};

/// Whether the pool can run jobs.
enum class PoolHealth {
  healthy,
  /// Workers keep failing to start; submit fails fast with ErrorKind::pool_degraded.
  degraded,
  /// shutdown() began; submit fails with ErrorKind::shutting_down.
  stopped,
};

PROCPOOL_API std::string_view to_string(WorkerState state) noexcept;
PROCPOOL_API std::string_view to_string(PoolHealth health) noexcept;

/// One worker process.
struct WorkerStats {
  /// Pool-local id, unique for the pool's lifetime.
  std::uint64_t id = 0;
  int pid = 0;
  WorkerState state = WorkerState::starting;
  std::uint64_t jobs_done = 0;
  /// The job it is running, if any, and for how long.
  std::optional<std::string> current_job;
  std::chrono::milliseconds current_job_running_for{0};
  /// Time since its last job finished (or since it became ready); 0 while busy.
  std::chrono::milliseconds idle_for{0};
  std::chrono::milliseconds age{0};
  /// Resident set size at the last reading (after its last job, or at ready), and the peak seen.
  std::uint64_t rss_bytes = 0;
  std::uint64_t peak_rss_bytes = 0;
};

/// A whole pool, taken under one lock so the figures agree with each other.
struct PoolStats {
  PoolHealth health = PoolHealth::healthy;
  std::vector<WorkerStats> workers;
  /// Jobs waiting for a worker, and jobs sent to a worker and not yet finished.
  std::size_t queued = 0;
  std::size_t in_flight = 0;
  /// Every job submit accepted or rejected.
  std::uint64_t submitted = 0;
  std::uint64_t succeeded = 0;
  std::uint64_t failed = 0;
  /// failed, broken down by ErrorKind (index with static_cast<std::size_t>(kind)).
  std::array<std::uint64_t, error_kind_count> failed_by_kind{};
  /// Attempts that were retried (idempotent jobs after a crash, timeout or memory kill).
  std::uint64_t retries = 0;
  std::uint64_t workers_started = 0;
  std::uint64_t workers_exited = 0;
  /// Workers that died or were killed before reporting ready, and spawn calls that failed.
  std::uint64_t start_failures = 0;
  /// Entries the supervisor holds for unfinished jobs across all its tables. 0 when the pool is
  /// idle: anything else is a leak.
  std::size_t tracked_jobs = 0;

  std::uint64_t failures(ErrorKind kind) const noexcept {
    return failed_by_kind[static_cast<std::size_t>(kind)];
  }
};

}  // namespace procpool
