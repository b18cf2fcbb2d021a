// JobQueue: the pool's queue of jobs not yet given to a worker.
#pragma once

#include <algorithm>
#include <cstddef>
#include <optional>
#include <utility>
#include <vector>

#include "worker_process.hpp"

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
/// Not thread-safe: the supervisor guards it with its queue mutex.
class JobQueue {
 public:
  bool empty() const noexcept { return size_ == 0; }
  std::size_t size() const noexcept { return size_; }

  /// The oldest job; the queue must not be empty.
  Job& front() noexcept { return slots_[head_]; }

  /// Throw only std::bad_alloc (growing), leaving the queue unchanged.
  void push_back(Job&& job) {
    make_room();
    slots_[(head_ + size_) & mask()] = std::move(job);
    ++size_;
  }
  void push_front(Job&& job) {
    make_room();
    head_ = (head_ + slots_.size() - 1) & mask();
    slots_[head_] = std::move(job);
    ++size_;
  }

  /// Removes and returns the oldest job; the queue must not be empty.
  Job pop_front() {
    Job job = std::move(slots_[head_]);
    slots_[head_] = Job();
    head_ = (head_ + 1) & mask();
    --size_;
    release_if_drained();
    return job;
  }

  /// Removes the job with this id, keeping the others in order; nullopt if it is not queued.
  std::optional<Job> remove(JobId id) {
    for (std::size_t i = 0; i < size_; ++i) {
      if (slots_[(head_ + i) & mask()].id != id) continue;
      Job job = std::move(slots_[(head_ + i) & mask()]);
      for (std::size_t j = i; j + 1 < size_; ++j)
        slots_[(head_ + j) & mask()] = std::move(slots_[(head_ + j + 1) & mask()]);
      slots_[(head_ + size_ - 1) & mask()] = Job();
      --size_;
      release_if_drained();
      return job;
    }
    return std::nullopt;
  }

  void swap(JobQueue& other) noexcept {
    slots_.swap(other.slots_);
    std::swap(head_, other.head_);
    std::swap(size_, other.size_);
  }

 private:
  // Below this many slots the ring is kept when it empties; above, a burst's worth of memory
  // goes back.
  static constexpr std::size_t kept_slots = 1024;

  std::size_t mask() const noexcept { return slots_.size() - 1; }

  void make_room() {
    if (size_ < slots_.size()) return;
    std::vector<Job> bigger(std::max<std::size_t>(16, slots_.size() * 2));
    for (std::size_t i = 0; i < size_; ++i)
      bigger[i] = std::move(slots_[(head_ + i) & mask()]);
    slots_.swap(bigger);
    head_ = 0;
  }

  void release_if_drained() {
    if (size_ == 0 && slots_.size() > kept_slots) {
      slots_ = std::vector<Job>();
      head_ = 0;
    }
  }

  std::vector<Job> slots_;  // a power of two in size, or empty
  std::size_t head_ = 0;
  std::size_t size_ = 0;
};

}  // namespace procpool::detail
