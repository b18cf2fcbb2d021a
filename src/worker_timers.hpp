// When the supervisor must next act on one worker. Each timer is set while it applies and unset
// as soon as it no longer does (a stopping worker keeps only kill_at), so the earliest one is
// simply the earliest set: next(). Supervisor thread only (and a Pool::call thread that holds the
// state lock).
#pragma once

#include <chrono>
#include <optional>

namespace procpool::detail {

struct WorkerTimers {
  using Clock = std::chrono::steady_clock;
  using Time = std::optional<Clock::time_point>;

  /// Its hello is due by then (PoolOptions::start_timeout), or its start failed.
  Time start_deadline;
  /// Its job's timeout.
  Time job_deadline;
  /// A busy worker's periodic memory sample (RecyclePolicy::memory_sample_interval).
  Time sample_at;
  /// An idle worker's reading after jobs that ended without one (memory_read_min_interval).
  Time idle_reading_at;
  /// When the recycle policy is to be asked again (a time-based rule could fire).
  Time policy_recheck_at;
  /// SIGKILL, its grace period to leave over.
  Time kill_at;

  /// The earliest timer set. `with_idle_reading`: whether an idle worker's reading counts, which
  /// alone is no reason to wake a sleeping supervisor thread (it is taken when it next wakes).
  Time next(bool with_idle_reading = true) const noexcept {
    Time earliest;
    for (const Time& t : {start_deadline, job_deadline, sample_at, policy_recheck_at, kill_at}) {
      if (t && (!earliest || *t < *earliest)) earliest = t;
    }
    if (with_idle_reading && idle_reading_at && (!earliest || *idle_reading_at < *earliest)) {
      earliest = idle_reading_at;
    }
    return earliest;
  }

  /// The worker was told to stop (or killed): only the kill after its grace period still applies.
  void stopping() noexcept {
    start_deadline.reset();
    job_deadline.reset();
    sample_at.reset();
    idle_reading_at.reset();
    policy_recheck_at.reset();
  }
};

}  // namespace procpool::detail
