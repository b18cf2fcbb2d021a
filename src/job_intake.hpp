// JobIntake: what the supervisor thread shares with the threads that submit jobs, about the jobs
// no worker has yet.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "job_queue.hpp"
#include "platform/platform.hpp"
#include "procpool/error.hpp"
#include "procpool/options.hpp"

namespace procpool::detail {

/// The queue of jobs not yet given to a worker, whether it takes new ones (stopping, degraded, a
/// drain asked for), the supervisor thread's sleep handshake with submitters, job ids, and the
/// descriptor that wakes that thread.
///
/// Thread-safety: every method may be called from any thread. The lock is taken only in here, and
/// nothing is called while it is held but the `decide` functions a caller passes, which look at a
/// job and must neither block nor call into the intake. So a caller may hold its own lock when it
/// calls in (the supervisor's state lock comes first), and never the other way round.
class JobIntake {
 public:
  JobIntake(std::size_t capacity, QueueFullPolicy when_full);
  JobIntake(const JobIntake&) = delete;
  JobIntake& operator=(const JobIntake&) = delete;

  /// What wakes the supervisor thread: readable (edge-triggered, never drained) after wake().
  int wake_descriptor() const noexcept { return wake_fd_.get(); }
  /// Wakes the supervisor thread.
  void wake() noexcept;

  /// The first of `n` consecutive new job ids.
  JobId take_ids(std::size_t n) noexcept;

  /// Why jobs were not queued.
  struct Refusal {
    ErrorKind kind;
    std::string message;
  };
  /// What push() did: jobs[0, queued) are queued (moved from); the rest, if any, are refused.
  struct Pushed {
    std::size_t queued = 0;
    std::optional<Refusal> refusal;
  };
  /// Queues `jobs` in order under one lock, each behind every queued job of its priority or
  /// higher (SubmitOptions::priority), waking the sleeping supervisor thread at most once per run
  /// of jobs that fit. A full queue refuses the rest, or waits for room with
  /// QueueFullPolicy::block if `may_wait` (never on the supervisor thread, which makes the room).
  Pushed push(std::span<Job> jobs, bool may_wait);

  /// Puts `jobs` back (a retry, jobs a worker never started) each ahead of every queued job of its
  /// priority or lower, behind every higher one, in their order within one priority; so with one
  /// priority, at the head of the queue in their order. Unless the pool is degraded: then leaves
  /// them with the caller and returns false.
  bool return_to_front(std::deque<std::unique_ptr<Job>>& jobs);

  /// Keeps `job` out of the queue until `ready_at` (a retry's backoff), when release_held() puts it
  /// back as return_to_front does; meanwhile it can be removed or fail its deadline as a queued
  /// job can. Unless the pool is degraded: then leaves it with the caller and returns false.
  bool hold(std::unique_ptr<Job>& job, std::chrono::steady_clock::time_point ready_at);
  /// Puts the held jobs whose time has come at `now` back in the queue.
  void release_held(std::chrono::steady_clock::time_point now);
  /// No earlier than the time the next held job is due (a time to look, as earliest_deadline);
  /// nullopt if none is held. Takes no lock.
  std::optional<std::chrono::steady_clock::time_point> next_release() const noexcept;

  /// What take_head() is to do with the job at the head of the queue.
  enum class HeadDecision {
    take,    // pop it and return it
    keep,    // leave it there, and stop
    refuse,  // pop it into `refused`, and look at the next one
  };
  /// Looks at the head of the queue with `decide(Job&) -> HeadDecision` (under the lock). Returns
  /// the job it was told to take, if any.
  template <class Decide>
  std::unique_ptr<Job> take_head(Decide&& decide, std::vector<Job>& refused);

  /// Pops jobs from the head while `decide(const Job&)` says true (under the lock), onto the
  /// back of `taken`.
  template <class Decide>
  void take_while(Decide&& decide, std::deque<std::unique_ptr<Job>>& taken);

  /// Removes the queued (or held) job `id`; nullopt if it is neither.
  std::optional<Job> remove(JobId id);
  /// No earlier than the earliest SubmitOptions::deadline of the jobs queued (it stays put when
  /// that job leaves the queue: a time to look, not a promise); nullopt if none has one. Takes no
  /// lock.
  std::optional<std::chrono::steady_clock::time_point> earliest_deadline() const noexcept;
  /// Removes the queued and held jobs whose deadline is at or before `now` onto `expired`.
  void take_expired(std::chrono::steady_clock::time_point now, std::vector<Job>& expired);
  /// Empties the queue, returning what it held, held jobs last.
  JobQueue take_all();

  /// No new jobs from now on; `drain`: how long queued and running jobs may still finish, for
  /// the supervisor thread to act on (drain_asked()).
  void stop(std::optional<std::chrono::milliseconds> drain);
  /// Sets whether the pool is degraded (new jobs refused); true if that changed it.
  bool set_degraded(bool degraded);

  /// A consistent view of the intake at one moment.
  struct State {
    std::size_t queued = 0;
    /// Jobs held for a retry's backoff (hold()), not in `queued`.
    std::size_t held = 0;
    bool stopping = false;
    bool degraded = false;
    /// The drain Pool::shutdown asked for, if it was called.
    std::optional<std::chrono::milliseconds> drain_asked;
    bool supervisor_sleeping = false;
  };
  State state() const;

  /// The supervisor thread is about to sleep. It may (true) unless jobs are queued and
  /// `dispatch_possible`, or a drain was asked for that has not `drain_begun`; a submit then wakes
  /// it only if `wake_on_submit`.
  bool begin_sleep(bool dispatch_possible, bool drain_begun, bool wake_on_submit);
  /// The supervisor thread is awake.
  void end_sleep();

 private:
  // After jobs left the queue with the lock held (`lock` is released here).
  void after_taking(std::unique_lock<std::mutex>& lock, std::size_t taken);

  const std::size_t capacity_;
  const QueueFullPolicy when_full_;
  platform::UniqueFd wake_fd_;
  std::atomic<JobId> next_id_{1};

  mutable std::mutex mutex_;
  std::condition_variable space_;  // room in the queue, for submitters waiting on a full one
  std::size_t space_waiters_ = 0;
  JobQueue queue_;
  bool stopping_ = false;
  bool degraded_ = false;
  std::optional<std::chrono::milliseconds> drain_asked_;
  bool supervisor_sleeping_ = false;
  bool submit_wakes_supervisor_ = true;
  // earliest_deadline() as steady_clock ticks; no_deadline for none. Written under mutex_.
  static constexpr std::chrono::steady_clock::rep no_deadline =
      std::numeric_limits<std::chrono::steady_clock::rep>::max();
  std::atomic<std::chrono::steady_clock::rep> earliest_deadline_{no_deadline};
  // Lowers earliest_deadline_ to `job`'s deadline if it has an earlier one (mutex_ held); true if
  // it did.
  bool note_deadline(const Job& job) noexcept;
  // Removes held_[i] (mutex_ held), moving the last one into its place.
  Job take_held(std::size_t i) noexcept;
  // Sets earliest_deadline_ from the jobs queued and held (mutex_ held).
  void recompute_earliest_deadline() noexcept;

  struct HeldJob {
    std::chrono::steady_clock::time_point ready_at;
    Job job;
  };
  std::vector<HeldJob> held_;  // in no order: few, and each looked at once per release
  std::atomic<std::chrono::steady_clock::rep> next_release_{no_deadline};
};

template <class Decide>
std::unique_ptr<Job> JobIntake::take_head(Decide&& decide, std::vector<Job>& refused) {
  std::unique_lock lock(mutex_);
  std::unique_ptr<Job> job;
  const std::size_t refused_before = refused.size();
  while (!queue_.empty()) {
    HeadDecision decision = decide(queue_.front());
    if (decision == HeadDecision::keep) break;
    if (decision == HeadDecision::refuse) {
      refused.push_back(queue_.pop_front());
      continue;
    }
    job = std::make_unique<Job>(queue_.pop_front());
    break;
  }
  after_taking(lock, refused.size() - refused_before + (job ? 1 : 0));
  return job;
}

template <class Decide>
void JobIntake::take_while(Decide&& decide, std::deque<std::unique_ptr<Job>>& taken) {
  std::unique_lock lock(mutex_);
  std::size_t n = 0;
  while (!queue_.empty() && decide(std::as_const(queue_.front()))) {
    taken.push_back(std::make_unique<Job>(queue_.pop_front()));
    ++n;
  }
  after_taking(lock, n);
}

}  // namespace procpool::detail
