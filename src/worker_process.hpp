// One worker process as the supervisor sees it. Touched only by the supervisor thread (and read by
// stats() under the state lock).
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>

#include "job.hpp"
#include "platform/platform.hpp"
#include "procpool/options.hpp"
#include "procpool/stats.hpp"
#include "worker_cgroups.hpp"
#include "worker_life.hpp"
#include "worker_link.hpp"
#include "worker_memory.hpp"
#include "worker_timers.hpp"

namespace procpool::detail {

using Clock = std::chrono::steady_clock;

/// What a poller key refers to: worker id * 4 + kind. Worker ids start at 1, so keys 0-3 are the
/// supervisor's own (SupervisorKey).
enum PollKey : std::uint64_t { doorbell_key = 1, exit_key = 2, output_key = 3 };

/// Poller keys that are not a worker's.
enum SupervisorKey : std::uint64_t {
  wake_key = 0,              ///< the supervisor's own wake-up (submit, shutdown)
  fork_answers_key = 1,      ///< the fork server in service answered (or went away)
  fork_server_exit_key = 2,  ///< a retired fork server exited
};

inline std::uint64_t poll_key(std::uint64_t worker_id, PollKey kind) {
  return worker_id * 4 + kind;
}

struct WorkerProcess {
  std::uint64_t id = 0;
  int pid = 0;
  platform::UniqueFd pidfd;
  /// Its channel: segment and rings, doorbell, descriptor socket, output pipe.
  WorkerLink link;
  /// Its memory cgroup, with PoolOptions::worker_cgroups (empty otherwise).
  WorkerCgroup cgroup;

  Clock::time_point spawned_at, ready_at, idle_since, job_started_at;
  WorkerTimers timers;

  // Recycling: this worker's own limits (jitter applied).
  std::uint64_t job_limit = 0;
  std::chrono::milliseconds lifetime_limit{0};
  /// Its readings, baseline, jobs awaiting a reading, waiver and budget reservation.
  WorkerMemory memory;
  std::optional<RecycleReason> predecessor_reason;

  /// Starting, ready, retiring, stopping or untrusted, and why it leaves.
  WorkerLife life;

  /// The job it runs (the oldest it was sent).
  std::unique_ptr<Job> job;
  /// Jobs sent whole into its request ring behind `job`, oldest first (PrefetchPolicy). Non-empty
  /// only while `job` is set and fully sent.
  std::deque<std::unique_ptr<Job>> prefetched;
  /// When its current job last looked late but the worker was not on it (jobs sent ahead are
  /// taken back only from a worker still on a late job).
  Clock::time_point late_check_at;
  /// A Pool::call thread gave it its job and waits for the result on its response ring (it is woken
  /// by a futex, wake_by_futex, not the doorbell); no job is sent ahead to it meanwhile.
  bool direct_call = false;
  /// Moving average of its job times (dispatch or previous result to result); nullopt until its
  /// first job.
  std::optional<Clock::duration> typical_job_time;

  std::uint64_t jobs_done = 0;

  /// Sends SIGKILL, through the pidfd.
  void kill() noexcept {
    platform::kill_process(pidfd.get());
    life.killed();
  }

  /// Can take a new job now.
  bool dispatchable() const noexcept { return life.ready() && !life.leaving() && !job; }

  /// As stats() shows it.
  WorkerState state() const noexcept { return life.state(job != nullptr); }
  /// What stats() shows of it at `now`.
  WorkerStats snapshot(Clock::time_point now) const;

  /// Jobs sent to it that have no outcome yet.
  std::size_t jobs_in_hand() const noexcept { return (job ? 1 : 0) + prefetched.size(); }
};

}  // namespace procpool::detail
