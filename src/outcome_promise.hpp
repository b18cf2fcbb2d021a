// OutcomePromise: the pool's end of a Future.
#pragma once

#include <memory>
#include <utility>

#include "procpool/future.hpp"

namespace procpool::detail {

/// Sets the outcome of the Future made from state(), once. Move-only. Destroyed unset (which the
/// supervisor's ownership of jobs rules out), it sets an error rather than leave the Future
/// waiting forever.
class OutcomePromise {
 public:
  /// Allocates the state a Future and this promise share (the only heap block of the pair).
  OutcomePromise() : state_(std::make_shared<OutcomeState>()) {}
  OutcomePromise(OutcomePromise&&) noexcept = default;
  OutcomePromise& operator=(OutcomePromise&& other) noexcept {
    if (this != &other) {
      abandon();
      state_ = std::move(other.state_);
    }
    return *this;
  }
  ~OutcomePromise() { abandon(); }

  /// The state to build the Future from.
  const std::shared_ptr<OutcomeState>& state() const noexcept { return state_; }

  /// Gives the Future its outcome; the promise is empty afterwards.
  void set(JobResult result) noexcept {
    std::shared_ptr<OutcomeState> state = std::move(state_);
    if (state) state->set(std::move(result));
  }

 private:
  void abandon() noexcept {
    if (!state_) return;
    JobError error;
    error.kind = ErrorKind::shutting_down;
    error.message = "the pool lost this job without giving it an outcome (a procpool bug)";
    set(JobResult::failure(std::move(error)));
  }

  std::shared_ptr<OutcomeState> state_;
};

}  // namespace procpool::detail
