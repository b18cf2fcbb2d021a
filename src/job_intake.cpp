#include "job_intake.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace procpool::detail {

namespace {

using Ticks = std::chrono::steady_clock::rep;

/// A time kept as ticks in an atomic, or nullopt for `none`.
std::optional<std::chrono::steady_clock::time_point> time_of(Ticks ticks, Ticks none) noexcept {
  if (ticks == none) return std::nullopt;
  return std::chrono::steady_clock::time_point(std::chrono::steady_clock::duration(ticks));
}

/// Lowers `earliest` to `t` if `t` is earlier (its one writer holds the intake's lock); true if it
/// did.
bool lower(std::atomic<Ticks>& earliest, std::chrono::steady_clock::time_point t) noexcept {
  const Ticks ticks = t.time_since_epoch().count();
  if (ticks >= earliest.load(std::memory_order_relaxed)) return false;
  earliest.store(ticks, std::memory_order_relaxed);
  return true;
}

}  // namespace

JobIntake::JobIntake(std::size_t capacity, QueueFullPolicy when_full)
    : capacity_(capacity), when_full_(when_full), wake_fd_(platform::make_eventfd()) {}

void JobIntake::wake() noexcept {
  platform::eventfd_notify(wake_fd_.get());
}

JobId JobIntake::take_ids(std::size_t n) noexcept {
  return next_id_.fetch_add(n, std::memory_order_relaxed);
}

JobIntake::Pushed JobIntake::push(std::span<Job> jobs, bool may_wait) {
  Pushed pushed;
  // No lock for nothing: a batch all refused takes none (in a forked copy, it may be held forever).
  if (jobs.empty()) return pushed;
  std::unique_lock lock(mutex_);
  bool deadline_sooner = false;
  while (pushed.queued < jobs.size()) {
    if (stopping_) {
      pushed.refusal = Refusal{ErrorKind::shutting_down, "the pool is shutting down"};
    } else if (degraded_) {
      pushed.refusal = Refusal{ErrorKind::pool_degraded,
                               "the pool is degraded: its workers keep failing (see the log); it "
                               "recovers when one starts cleanly"};
    } else if (queue_.size() >= capacity_) {
      if (when_full_ == QueueFullPolicy::block && may_wait) {
        ++space_waiters_;
        space_.wait(lock);
        --space_waiters_;
        continue;
      }
      pushed.refusal = Refusal{
          ErrorKind::queue_full,
          fmt::format("the queue is full ({} jobs, PoolOptions::queue_capacity)", capacity_)};
    }
    if (pushed.refusal) break;
    const std::size_t room = capacity_ - queue_.size();
    for (std::size_t end = std::min(jobs.size(), pushed.queued + room); pushed.queued < end;
         ++pushed.queued) {
      deadline_sooner |= note_deadline(jobs[pushed.queued]);
      queue_.insert_last_of_priority(std::move(jobs[pushed.queued]));
    }
    // A sleeping supervisor that does not wake for submits still must for a deadline sooner than
    // any it set its timers by.
    if (supervisor_sleeping_ && (submit_wakes_supervisor_ || deadline_sooner)) {
      supervisor_sleeping_ = false;
      lock.unlock();
      wake();
      lock.lock();
    }
  }
  return pushed;
}

bool JobIntake::return_to_front(std::deque<std::unique_ptr<Job>>& jobs) {
  std::lock_guard lock(mutex_);
  if (degraded_) return false;
  for (auto it = jobs.rbegin(); it != jobs.rend(); ++it) {
    note_deadline(**it);
    queue_.insert_first_of_priority(std::move(**it));
  }
  jobs.clear();
  return true;
}

bool JobIntake::hold(std::unique_ptr<Job>& job, std::chrono::steady_clock::time_point ready_at) {
  std::lock_guard lock(mutex_);
  if (degraded_) return false;
  held_.push_back(HeldJob{ready_at, std::move(*job)});
  job.reset();
  note_deadline(held_.back().job);
  lower(next_release_, ready_at);
  return true;
}

void JobIntake::release_held(std::chrono::steady_clock::time_point now) {
  const auto due = next_release_.load(std::memory_order_relaxed);
  if (due == no_deadline || due > now.time_since_epoch().count()) return;
  std::lock_guard lock(mutex_);
  std::chrono::steady_clock::rep next = no_deadline;
  for (std::size_t i = 0; i < held_.size();) {
    if (held_[i].ready_at <= now) {
      queue_.insert_first_of_priority(take_held(i));
    } else {
      next = std::min(next, held_[i].ready_at.time_since_epoch().count());
      ++i;
    }
  }
  next_release_.store(next, std::memory_order_relaxed);
}

std::optional<std::chrono::steady_clock::time_point> JobIntake::next_release() const noexcept {
  return time_of(next_release_.load(std::memory_order_relaxed), no_deadline);
}

Job JobIntake::take_held(std::size_t i) noexcept {
  Job job(std::move(held_[i].job));
  held_[i] = std::move(held_.back());
  held_.pop_back();
  return job;
}

std::optional<Job> JobIntake::remove(JobId id) {
  std::unique_lock lock(mutex_);
  std::optional<Job> job = queue_.remove(id);
  if (!job) {
    for (std::size_t i = 0; i < held_.size(); ++i) {
      if (held_[i].job.id != id) continue;
      job.emplace(take_held(i));
      break;
    }
  }
  after_taking(lock, job ? 1 : 0);
  return job;
}

std::optional<std::chrono::steady_clock::time_point> JobIntake::earliest_deadline() const noexcept {
  return time_of(earliest_deadline_.load(std::memory_order_relaxed), no_deadline);
}

void JobIntake::take_expired(std::chrono::steady_clock::time_point now, std::vector<Job>& expired) {
  std::unique_lock lock(mutex_);
  const std::size_t before = expired.size();
  auto passed = [now](const Job& job) {
    return job.options.deadline && *job.options.deadline <= now;
  };
  queue_.take_if(passed, expired);
  // Room first: a held job is moved out before it is appended.
  expired.reserve(expired.size() + static_cast<std::size_t>(std::count_if(
                                       held_.begin(), held_.end(),
                                       [&](const HeldJob& held) { return passed(held.job); })));
  for (std::size_t i = 0; i < held_.size();) {
    if (passed(held_[i].job)) {
      expired.push_back(take_held(i));
    } else {
      ++i;
    }
  }
  recompute_earliest_deadline();
  after_taking(lock, expired.size() - before);
}

void JobIntake::recompute_earliest_deadline() noexcept {
  std::chrono::steady_clock::rep earliest = no_deadline;
  auto look = [&](const Job& job) {
    if (job.options.deadline) {
      earliest = std::min(earliest, job.options.deadline->time_since_epoch().count());
    }
  };
  queue_.for_each(look);
  for (const HeldJob& held : held_)
    look(held.job);
  earliest_deadline_.store(earliest, std::memory_order_relaxed);
}

bool JobIntake::note_deadline(const Job& job) noexcept {
  return job.options.deadline && lower(earliest_deadline_, *job.options.deadline);
}

JobQueue JobIntake::take_all() {
  JobQueue jobs;
  std::unique_lock lock(mutex_);
  jobs.swap(queue_);
  for (HeldJob& held : held_)
    jobs.push_back(std::move(held.job));
  held_.clear();
  next_release_.store(no_deadline, std::memory_order_relaxed);
  after_taking(lock, jobs.size());
  return jobs;
}

void JobIntake::stop(std::optional<std::chrono::milliseconds> drain) {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    if (drain) drain_asked_ = std::max(*drain, std::chrono::milliseconds{0});
  }
  // Submitters waiting for room are refused now.
  space_.notify_all();
}

bool JobIntake::set_degraded(bool degraded) {
  std::lock_guard lock(mutex_);
  return std::exchange(degraded_, degraded) != degraded;
}

JobIntake::State JobIntake::state() const {
  std::lock_guard lock(mutex_);
  return State{queue_.size(), held_.size(), stopping_,
               degraded_,     drain_asked_, supervisor_sleeping_};
}

bool JobIntake::begin_sleep(bool dispatch_possible, bool drain_begun, bool wake_on_submit) {
  std::lock_guard lock(mutex_);
  if (!queue_.empty() && dispatch_possible) return false;
  if (drain_asked_ && !drain_begun) return false;
  supervisor_sleeping_ = true;
  submit_wakes_supervisor_ = wake_on_submit;
  return true;
}

void JobIntake::end_sleep() {
  std::lock_guard lock(mutex_);
  supervisor_sleeping_ = false;
}

void JobIntake::after_taking(std::unique_lock<std::mutex>& lock, std::size_t taken) {
  const bool waiters = space_waiters_ > 0;
  lock.unlock();
  if (taken > 0 && waiters) space_.notify_all();
}

}  // namespace procpool::detail
