// Future<T>: the pending outcome of a submitted job.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <utility>

#include "procpool/codec.hpp"
#include "procpool/export.hpp"
#include "procpool/result.hpp"

namespace procpool {

/// Identifies a submitted job within its pool.
using JobId = std::uint64_t;

/// Called once with a job's outcome: on the pool's supervisor thread, or on the calling thread when
/// the job ends inside submit() (rejected) or cancel(). Keep it short: the pool does not dispatch
/// while it runs. It may call submit, cancel and stats; calling shutdown or destroying the Pool
/// from it is a programming error (shutdown logs and returns; ~Pool would terminate). An exception
/// escaping it is caught and logged.
using Completion = std::function<void(JobResult)>;

/// Called once per job of a batch with the job's index in the batch and its outcome; otherwise as
/// Completion (same threads and rules: a cancel() on another thread may call it while the
/// supervisor thread does too, so synchronise what it shares).
using BatchCompletion = std::function<void(std::size_t index, JobResult)>;

namespace detail {

/// The one heap block a Future shares with its pool: the job's outcome once it is there, and the
/// word a waiting thread sleeps on. Internal; use Future.
///
/// Why not std::promise: a promise costs two heap blocks and a std::call_once per job, and a
/// thread that reads a future before it is ready always sleeps in the kernel. Here the pool sets
/// the outcome with one atomic operation and calls the kernel only when a thread sleeps on it.
///
/// Thread-safety: set() from one thread, the waits from one other thread at a time.
class PROCPOOL_API OutcomeState {
 public:
  /// Stores the outcome and wakes the thread waiting for it. Called exactly once.
  void set(JobResult result) noexcept;
  /// True once set() has run.
  bool ready() const noexcept { return (word_.load(std::memory_order_acquire) & ready_bit) != 0; }
  /// Blocks until ready().
  void wait() const noexcept;
  /// Blocks until ready() or for at most `timeout`; returns ready().
  bool wait_for(std::chrono::nanoseconds timeout) const noexcept;
  /// Moves the outcome out; requires ready(), and is done once.
  JobResult take() noexcept { return std::move(*result_); }

 private:
  static constexpr std::uint32_t ready_bit = 1;
  static constexpr std::uint32_t sleeper_bit = 2;  // a thread sleeps (or is about to) on word_
  /// Marks a sleeper and sleeps on word_ for at most `timeout` (forever if nullopt).
  void sleep(std::optional<std::chrono::nanoseconds> timeout) const noexcept;

  mutable std::atomic<std::uint32_t> word_{0};
  std::optional<JobResult> result_;  // written before ready_bit is set
};

/// `d` in nanoseconds, rounded up, 0 if negative and nanoseconds::max() if it does not fit.
template <class Rep, class Period>
std::chrono::nanoseconds saturated_nanoseconds(const std::chrono::duration<Rep, Period>& d) {
  using std::chrono::nanoseconds;
  if (d <= d.zero()) return nanoseconds::zero();
  if (std::chrono::duration<double, std::nano>(d).count() >=
      static_cast<double>(nanoseconds::max().count())) {
    return nanoseconds::max();
  }
  return std::chrono::ceil<nanoseconds>(d);
}

}  // namespace detail

/// The pending outcome of a job. Move-only. get() blocks until the job has its one outcome; it
/// never throws because of what the job did (failures come back as a Result holding a JobError).
/// Dropping a Future unread is fine: the job still runs and its outcome is discarded.
/// One Future must not be used from two threads at once.
template <class T>
class Future {
 public:
  /// An invalid Future (valid() is false), to be assigned from Pool::submit.
  Future() = default;
  /// The future of job `id` whose outcome arrives in `state`. Pool::submit makes these; users
  /// need not.
  Future(JobId id, std::shared_ptr<detail::OutcomeState> state)
      : id_(id), state_(std::move(state)) {}
  /// The same job's future with its response decoded as T instead of U (Pool's typed submit).
  template <class U>
  explicit Future(Future<U>&& other) noexcept : id_(other.id_), state_(std::move(other.state_)) {}

  /// The job's id, for Pool::cancel.
  JobId id() const noexcept { return id_; }
  /// False for a default-constructed or already consumed Future.
  bool valid() const noexcept { return state_ != nullptr; }

  /// Waits for the outcome and returns it; consumes the Future. For typed jobs the response is
  /// decoded here, on the caller's thread; a decode failure gives ErrorKind::codec_error.
  /// Requires valid() (throws std::future_error with future_errc::no_state otherwise).
  Result<T> get() {
    std::shared_ptr<detail::OutcomeState> state = std::move(checked_state());
    state->wait();
    JobResult raw = state->take();
    if constexpr (std::is_same_v<T, Bytes>) {
      return raw;
    } else {
      if (!raw.ok()) return Result<T>::failure(std::move(raw).error());
      try {
        return Result<T>::success(Codec<T>::decode(raw.value()));
      } catch (const std::exception& e) {
        JobError error;
        error.kind = ErrorKind::codec_error;
        error.message = std::string("cannot decode the response: ") + e.what();
        return Result<T>::failure(std::move(error));
      }
    }
  }

  /// Blocks until the outcome is ready, without consuming it. Requires valid() (throws
  /// std::future_error otherwise).
  void wait() const { checked_state()->wait(); }
  /// Waits at most `timeout`; returns std::future_status::ready once the outcome is there, else
  /// std::future_status::timeout. Requires valid() (throws std::future_error otherwise).
  template <class Rep, class Period>
  std::future_status wait_for(const std::chrono::duration<Rep, Period>& timeout) const {
    return status(checked_state()->wait_for(detail::saturated_nanoseconds(timeout)));
  }
  /// Waits until `deadline` at the latest; returns std::future_status::ready once the outcome is
  /// there, else std::future_status::timeout. Requires valid() (throws std::future_error
  /// otherwise).
  template <class Clock, class Duration>
  std::future_status wait_until(const std::chrono::time_point<Clock, Duration>& deadline) const {
    const auto& state = checked_state();
    if (state->ready()) return std::future_status::ready;
    return status(state->wait_for(detail::saturated_nanoseconds(deadline - Clock::now())));
  }

 private:
  template <class U>
  friend class Future;

  static std::future_status status(bool ready) noexcept {
    return ready ? std::future_status::ready : std::future_status::timeout;
  }
  const std::shared_ptr<detail::OutcomeState>& checked_state() const {
    if (!state_) throw std::future_error(std::future_errc::no_state);
    return state_;
  }
  std::shared_ptr<detail::OutcomeState>& checked_state() {
    if (!state_) throw std::future_error(std::future_errc::no_state);
    return state_;
  }

  JobId id_ = 0;
  std::shared_ptr<detail::OutcomeState> state_;
};

/// The future of an untyped job.
using JobFuture = Future<Bytes>;

}  // namespace procpool
