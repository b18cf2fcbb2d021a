// JobQueue: the pool's queue of jobs not yet given to a worker.
#pragma once

#include <algorithm>
#include <cstddef>
#include <memory>
#include <new>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

#include "job.hpp"
#include "platform/platform.hpp"

namespace procpool::detail {

/// A double-ended queue of jobs held by value in a ring that grows by doubling and is reused.
///
/// Why not std::deque<std::unique_ptr<Job>>: submitting threads push and the supervisor thread
/// pops, so every heap block per job (the Job, a deque block every few jobs) would be allocated on
/// one thread and freed on the other. glibc's malloc then takes the arena lock of the allocating
/// thread on both sides, and the two threads contend on it: in procpool-bench that was three
/// quarters of all futex calls. Here a job costs no allocation of the queue's own once the ring
/// has grown to the depth the pool sees.
///
/// Jobs queued with insert_last_of_priority and insert_first_of_priority are kept in order of
/// SubmitOptions::priority, highest first, and in the order they came within one priority; so the
/// head is always a job of the highest priority queued. push_back and push_front ignore priority.
///
/// Not thread-safe: the supervisor guards it with its queue mutex.
class JobQueue {
 public:
  JobQueue() = default;
  JobQueue(const JobQueue&) = delete;
  JobQueue& operator=(const JobQueue&) = delete;
  JobQueue(JobQueue&& other) noexcept { swap(other); }
  ~JobQueue() { release(); }

  bool empty() const noexcept { return size_ == 0; }
  std::size_t size() const noexcept { return size_; }

  /// The job at the head, the next to leave; the queue must not be empty.
  Job& front() noexcept { return slots_[head_]; }

  /// Throw only std::bad_alloc (growing), leaving the queue unchanged.
  void push_back(Job&& job) {
    make_room();
    new (&slots_[(head_ + size_) & mask()]) Job(std::move(job));
    ++size_;
  }
  void push_front(Job&& job) {
    make_room();
    std::size_t slot = (head_ + capacity_ - 1) & mask();
    new (&slots_[slot]) Job(std::move(job));
    head_ = slot;
    ++size_;
  }

  /// Queues a new job behind every job of its priority or higher, ahead of every lower one. A job
  /// not higher than the back (every job when all have one priority) is a plain push_back; only a
  /// job overtaking others costs a scan and a shift, of the jobs it overtakes at most. Throws only
  /// std::bad_alloc (growing), leaving the queue unchanged.
  void insert_last_of_priority(Job&& job) {
    const int priority = job.options.priority;
    if (size_ == 0 || priority <= at(size_ - 1).options.priority) {
      push_back(std::move(job));
    } else if (priority > front().options.priority) {
      push_front(std::move(job));
    } else {
      std::size_t i = size_ - 1;  // at(0) is not lower, so i stays >= 1
      while (at(i - 1).options.priority < priority)
        --i;
      insert(i, std::move(job));
    }
  }

  /// Puts a job back (it had left the queue unstarted) ahead of every job of its priority or
  /// lower, behind every higher one; jobs put back last to first keep their order within each
  /// priority. A job not lower than the head (every job when all have one priority) is a plain
  /// push_front. Throws only std::bad_alloc (growing), leaving the queue unchanged.
  void insert_first_of_priority(Job&& job) {
    const int priority = job.options.priority;
    if (size_ == 0 || priority >= front().options.priority) {
      push_front(std::move(job));
    } else if (priority < at(size_ - 1).options.priority) {
      push_back(std::move(job));
    } else {
      std::size_t i = 1;  // at(size_ - 1) is not higher, so i stays <= size_ - 1
      while (at(i).options.priority > priority)
        ++i;
      insert(i, std::move(job));
    }
  }

  /// Removes and returns the job at the head; the queue must not be empty.
  Job pop_front() {
    Job job(std::move(slots_[head_]));
    slots_[head_].~Job();
    head_ = (head_ + 1) & mask();
    --size_;
    release_if_drained();
    return job;
  }

  /// Removes the job with this id, keeping the others in order; nullopt if it is not queued.
  std::optional<Job> remove(JobId id) {
    for (std::size_t i = 0; i < size_; ++i) {
      if (at(i).id != id) continue;
      std::optional<Job> job(std::move(at(i)));
      for (std::size_t j = i; j + 1 < size_; ++j)
        at(j) = std::move(at(j + 1));
      at(size_ - 1).~Job();
      --size_;
      release_if_drained();
      return job;
    }
    return std::nullopt;
  }

  /// Calls `visit(const Job&)` for each job, head first.
  template <class Visit>
  void for_each(Visit&& visit) {
    for (std::size_t i = 0; i < size_; ++i)
      visit(std::as_const(at(i)));
  }

  /// Removes every job for which `pred(const Job&)` is true onto the back of `taken`, keeping the
  /// others in order. Throws only std::bad_alloc (making room in `taken`), before any job moves.
  template <class Pred>
  void take_if(Pred&& pred, std::vector<Job>& taken) {
    std::size_t matching = 0;
    for (std::size_t i = 0; i < size_; ++i)
      matching += pred(std::as_const(at(i))) ? 1 : 0;
    if (matching == 0) return;
    taken.reserve(taken.size() + matching);
    std::size_t kept = 0;
    for (std::size_t i = 0; i < size_; ++i) {
      if (pred(std::as_const(at(i)))) {
        taken.push_back(std::move(at(i)));
      } else if (kept++ != i) {
        at(kept - 1) = std::move(at(i));
      }
    }
    for (std::size_t i = kept; i < size_; ++i)
      at(i).~Job();
    size_ = kept;
    release_if_drained();
  }

  void swap(JobQueue& other) noexcept {
    std::swap(slots_, other.slots_);
    std::swap(capacity_, other.capacity_);
    std::swap(head_, other.head_);
    std::swap(size_, other.size_);
  }

 private:
  // Below this many slots the ring is kept when it empties; above, a burst's worth of memory
  // goes back.
  static constexpr std::size_t kept_slots = 1024;

  std::size_t mask() const noexcept { return capacity_ - 1; }
  Job& at(std::size_t i) noexcept { return slots_[(head_ + i) & mask()]; }

  // Makes `job` the one at position `i` (0 < i < size_), moving the jobs on the shorter side of
  // it one slot outwards.
  void insert(std::size_t i, Job&& job) {
    make_room();
    if (i < size_ - i) {
      const std::size_t slot = (head_ + capacity_ - 1) & mask();
      new (&slots_[slot]) Job(std::move(at(0)));
      head_ = slot;
      ++size_;
      for (std::size_t j = 1; j < i; ++j)
        at(j) = std::move(at(j + 1));
    } else {
      new (&slots_[(head_ + size_) & mask()]) Job(std::move(at(size_ - 1)));
      ++size_;
      for (std::size_t j = size_ - 2; j > i; --j)
        at(j) = std::move(at(j - 1));
    }
    at(i) = std::move(job);
  }

  // Slots are raw storage: a job is constructed in one when pushed and destroyed when popped, so
  // growing touches only the jobs queued (no default-constructed, zero-filled slots).
  void make_room() {
    if (size_ < capacity_) return;
    std::size_t capacity = std::max<std::size_t>(16, capacity_ * 2);
    Job* bigger = allocate(capacity);
    for (std::size_t i = 0; i < size_; ++i) {
      new (&bigger[i]) Job(std::move(at(i)));
      at(i).~Job();
    }
    deallocate(slots_, capacity_);
    slots_ = bigger;
    capacity_ = capacity;
    head_ = 0;
  }

  void release_if_drained() {
    if (size_ == 0 && capacity_ > kept_slots) release();
  }

  // A ring past a burst's size comes straight from the kernel and goes straight back: from the
  // heap, a freed block that size could stay in the allocator (and in the host's RSS) for good.
  static constexpr std::size_t kernel_bytes = std::size_t{1} << 20;

  static Job* allocate(std::size_t slots) {
    if (slots * sizeof(Job) >= kernel_bytes) {
      return static_cast<Job*>(platform::map_anonymous(slots * sizeof(Job)));
    }
    return std::allocator<Job>().allocate(slots);
  }

  static void deallocate(Job* slots, std::size_t count) noexcept {
    if (!slots) return;
    if (count * sizeof(Job) >= kernel_bytes) {
      platform::unmap_anonymous(slots, count * sizeof(Job));
    } else {
      std::allocator<Job>().deallocate(slots, count);
    }
  }

  void release() noexcept {
    for (std::size_t i = 0; i < size_; ++i)
      at(i).~Job();
    deallocate(slots_, capacity_);
    slots_ = nullptr;
    capacity_ = head_ = size_ = 0;
  }

  static_assert(std::is_nothrow_move_constructible_v<Job> && std::is_nothrow_move_assignable_v<Job>,
                "growing the ring and inserting into it move jobs and must not fail half-way");

  Job* slots_ = nullptr;  // capacity_ slots, a power of two; jobs live in [head_, head_ + size_)
  std::size_t capacity_ = 0;
  std::size_t head_ = 0;
  std::size_t size_ = 0;
};

}  // namespace procpool::detail
