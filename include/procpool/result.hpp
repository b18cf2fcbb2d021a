// Result<T>: the outcome of one job, either a value or a JobError.
#pragma once

#include <cstddef>
#include <stdexcept>
#include <utility>
#include <variant>
#include <vector>

#include "procpool/error.hpp"

namespace procpool {

/// Raw job payloads and results.
using Bytes = std::vector<std::byte>;

/// Thrown by Result::value() on a failed result and Result::error() on a successful one.
class BadResultAccess : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};

/// The outcome of a job: a T on success, a JobError otherwise. A value type; not thread-safe to
/// mutate concurrently, safe to read from many threads.
template <class T>
class Result {
 public:
  /// A successful outcome holding `value`.
  static Result success(T value) { return Result(std::in_place_index<0>, std::move(value)); }
  /// A failed outcome holding `error`.
  static Result failure(JobError error) { return Result(std::in_place_index<1>, std::move(error)); }

  /// True if the job succeeded (value() is there), false if it failed (error() is there).
  bool ok() const noexcept { return state_.index() == 0; }
  /// Same as ok().
  explicit operator bool() const noexcept { return ok(); }

  /// The job's value. Throws BadResultAccess (with the error's message) if the job failed.
  const T& value() const& {
    check_ok();
    return std::get<0>(state_);
  }
  /// The job's value, mutable. Throws BadResultAccess if the job failed.
  T& value() & {
    check_ok();
    return std::get<0>(state_);
  }
  /// The job's value, moved out. Throws BadResultAccess if the job failed.
  T&& value() && {
    check_ok();
    return std::get<0>(std::move(state_));
  }

  /// Why the job failed. Throws BadResultAccess if it succeeded.
  const JobError& error() const& {
    if (ok()) throw BadResultAccess("procpool::Result::error() called on a successful result");
    return std::get<1>(state_);
  }
  /// The JobError, moved out. Throws BadResultAccess if the job succeeded.
  JobError&& error() && {
    if (ok()) throw BadResultAccess("procpool::Result::error() called on a successful result");
    return std::get<1>(std::move(state_));
  }

 private:
  template <std::size_t I, class V>
  Result(std::in_place_index_t<I> tag, V&& v) : state_(tag, std::forward<V>(v)) {}

  void check_ok() const {
    if (!ok()) {
      const JobError& e = std::get<1>(state_);
      throw BadResultAccess("procpool::Result::value() on a failed job (" +
                            std::string(to_string(e.kind)) + "): " + e.message);
    }
  }

  std::variant<T, JobError> state_;
};

/// The outcome of an untyped job.
using JobResult = Result<Bytes>;

}  // namespace procpool
