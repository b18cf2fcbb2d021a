// AdaptiveSpin: poll briefly for an event before sleeping on it, and stop trying where it fails.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <optional>
#include <utility>

#include "platform/platform.hpp"

namespace procpool::detail {

/// Polls a condition for at most a budget before its owner sleeps. Why: on machines whose idle
/// CPUs halt, waking a thread on another core costs tens of microseconds each way; a poller on a
/// free core sees the same event in well under one. Each turn yields the CPU (sched_yield), so a
/// runnable thread on the same CPU, perhaps the one that will produce the event, runs first; and
/// a yield that took long and ran another thread ends the poll: the CPU is not free. A long yield
/// that ran no other thread (a virtual CPU the hypervisor took for a while) does not.
/// Polls that run out of budget in a row make the next waits sleep at once (1, 3, 7 ... 63 waits
/// after 2, 3, 4 ... 7 misses in a row; a lone miss skips none, so that one late event does not
/// cost the next ones): where events come later than the budget, polling costs at most one budget
/// per 64 waits. One success resets it.
///
/// Thread-safety: one thread at a time (each poller owns one).
class AdaptiveSpin {
 public:
  using Clock = std::chrono::steady_clock;

  /// A budget of 0 never polls. `contended_yield`: a yield that takes this long, and in which this
  /// thread was switched out, ran another thread and ends the poll.
  explicit AdaptiveSpin(
      std::chrono::nanoseconds budget = {},
      std::chrono::nanoseconds contended_yield = std::chrono::microseconds(10)) noexcept
      : budget_(budget), contended_yield_(contended_yield) {}

  /// True if the next wait would poll (take_turn() would return true). Counts nothing.
  bool willing() const noexcept { return budget_.count() > 0 && skip_ == 0; }

  /// Starts a wait: true if it may poll (then call poll_now()), false when off or backing off,
  /// which counts this wait as one of those skipped. Why a separate step: a caller that must know
  /// before it polls (the supervisor arms or disarms its wake-ups) still counts its skipped waits;
  /// one that only peeked at willing() would back off for good.
  bool take_turn() noexcept {
    if (budget_.count() <= 0) return false;
    if (skip_ > 0) {
      --skip_;
      return false;
    }
    return true;
  }

  /// Polls `ready` until it returns true (then true) or for the budget, at most `limit` (then
  /// false, and later waits back off). Call only after take_turn() returned true.
  template <class Ready>
  bool poll_now(Ready&& ready, std::chrono::nanoseconds limit = std::chrono::nanoseconds::max()) {
    const Clock::time_point deadline = Clock::now() + std::min(budget_, limit);
    std::optional<std::uint64_t> switches;  // read before the first yield, while waiting anyway
    for (bool contended = false, first_yield = true;;) {
      if (ready()) {
        misses_ = 0;
        return true;
      }
      if (contended) break;
      Clock::time_point before = Clock::now();
      if (before >= deadline) break;
      if (first_yield) switches = platform::involuntary_switches();
      first_yield = false;
      platform::yield_cpu();
      if (Clock::now() - before < contended_yield_) continue;
      // A yield that took long and ran another thread: this CPU is wanted, and polling on it
      // would take turns from threads with work (perhaps the one this poll waits for). One last
      // look, then sleep. One that took long without a switch lost the CPU to the hypervisor (on
      // this project's VMs, 9 in 10 of the long yields of a worker polling on a CPU of its own):
      // that says nothing about this CPU being wanted here, and ending the poll then sent the
      // round trip through two cross-core wake-ups. Unknown counts as contended.
      std::optional<std::uint64_t> now_switches = platform::involuntary_switches();
      contended = !switches || !now_switches || *now_switches != *switches;
      switches = now_switches;
    }
    misses_ = std::min(misses_ + 1, max_misses);
    skip_ = (1u << (misses_ - 1)) - 1;
    return false;
  }

  /// One wait: take_turn(), then poll_now() if it may poll. False without polling when off or
  /// backing off.
  template <class Ready>
  bool poll(Ready&& ready, std::chrono::nanoseconds limit = std::chrono::nanoseconds::max()) {
    return take_turn() && poll_now(std::forward<Ready>(ready), limit);
  }

 private:
  static constexpr unsigned max_misses = 7;
  std::chrono::nanoseconds budget_;
  std::chrono::nanoseconds contended_yield_;
  unsigned misses_ = 0;
  unsigned skip_ = 0;
};

/// Whether a worker running a job keeps a CPU busy for longer than a poll of `budget` lasts, for
/// deciding whether a CPU is free to poll on: unless its jobs typically take less than `budget`
/// and this one has not yet run that long (it is about to give its CPU back). `typical_job_time`
/// is nullopt before its first job.
inline bool job_holds_cpu(std::optional<std::chrono::nanoseconds> typical_job_time,
                          std::chrono::nanoseconds running_for,
                          std::chrono::nanoseconds budget) noexcept {
  return !typical_job_time || *typical_job_time >= budget || running_for >= budget;
}

}  // namespace procpool::detail
