// Future<T>: the pending outcome of a submitted job.
#pragma once

#include <chrono>
#include <cstdint>
#include <future>
#include <utility>

#include "procpool/codec.hpp"
#include "procpool/result.hpp"

namespace procpool {

/// Identifies a submitted job within its pool.
using JobId = std::uint64_t;

/// The pending outcome of a job. Move-only. get() blocks until the job has its one outcome; it
/// never throws because of what the job did (failures come back as a Result holding a JobError).
/// Dropping a Future unread is fine: the job still runs and its outcome is discarded.
/// One Future must not be used from two threads at once.
template <class T>
class Future {
 public:
  /// An invalid Future (valid() is false), to be assigned from Pool::submit.
  Future() = default;
  /// Wraps the raw future of job `id`. Pool::submit makes these; users rarely need to.
  Future(JobId id, std::future<JobResult> inner) : id_(id), inner_(std::move(inner)) {}

  /// The job's id, for Pool::cancel.
  JobId id() const noexcept { return id_; }
  /// False for a default-constructed or already consumed Future.
  bool valid() const noexcept { return inner_.valid(); }

  /// Waits for the outcome and returns it; consumes the Future. For typed jobs the response is
  /// decoded here, on the caller's thread; a decode failure gives ErrorKind::codec_error.
  Result<T> get() {
    JobResult raw = inner_.get();
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

  /// Gives up the underlying std::future of the raw bytes (used to re-type a Future).
  std::future<JobResult> release_inner() && { return std::move(inner_); }

  /// Blocks until the outcome is ready, without consuming it. Requires valid().
  void wait() const { inner_.wait(); }
  /// Waits at most `timeout`; returns std::future_status::ready once the outcome is there.
  /// Requires valid().
  template <class Rep, class Period>
  std::future_status wait_for(const std::chrono::duration<Rep, Period>& timeout) const {
    return inner_.wait_for(timeout);
  }
  /// Waits until `deadline` at the latest; returns std::future_status::ready once the outcome is
  /// there. Requires valid().
  template <class Clock, class Duration>
  std::future_status wait_until(const std::chrono::time_point<Clock, Duration>& deadline) const {
    return inner_.wait_until(deadline);
  }

 private:
  JobId id_ = 0;
  std::future<JobResult> inner_;
};

/// The future of an untyped job.
using JobFuture = Future<Bytes>;

}  // namespace procpool
