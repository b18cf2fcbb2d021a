// Where one worker is in its life: starting, ready, retiring (leaving after its job), stopping (a
// stop or a kill sent), or untrusted (it broke the protocol and was killed). The transitions keep
// what separate flags could not: a stop implies a reason to leave, a broken protocol implies a
// stop, and the state stats() shows follows from them. Supervisor thread only (and a Pool::call
// thread that holds the state lock).
#pragma once

#include <optional>
#include <string>

#include "procpool/worker_state.hpp"

namespace procpool::detail {

class WorkerLife {
 public:
  /// It said hello in the host's protocol.
  bool ready() const noexcept { return ready_; }
  /// Why it is leaving, once decided: a policy retired it, or the supervisor is stopping it.
  const std::optional<RecycleReason>& leaving() const noexcept { return leaving_; }
  /// What made it leave, in words (empty if nothing more than the reason).
  const std::string& leaving_detail() const noexcept { return detail_; }
  /// A stop record, SIGTERM or SIGKILL was sent.
  bool stop_sent() const noexcept { return stop_ != Stop::none; }
  /// It broke the protocol: nothing more is read from its segment.
  bool untrusted() const noexcept { return stop_ == Stop::untrusted; }
  /// SIGKILL was sent: a SIGKILL it dies of is the supervisor's, not the OOM killer's.
  bool kill_sent() const noexcept { return kill_sent_; }
  /// What stats() shows, given whether it has a job.
  WorkerState state(bool has_job) const noexcept {
    if (stop_sent()) return WorkerState::stopping;
    if (leaving_) return has_job ? WorkerState::retiring : WorkerState::stopping;
    if (!ready_) return WorkerState::starting;
    return has_job ? WorkerState::busy : WorkerState::idle;
  }

  void became_ready() noexcept { ready_ = true; }
  /// A policy decided that it leaves once its job is done (stopped then: stop()).
  void retire(RecycleReason reason, std::string detail) {
    leaving_ = reason;
    detail_ = std::move(detail);
  }
  /// It is told to go, or killed, for `reason` (which overtakes a retirement under way); an empty
  /// `detail` keeps the one it had. Nothing changes for a worker that broke the protocol.
  void stop(RecycleReason reason, std::string detail) {
    if (untrusted()) return;
    leaving_ = reason;
    if (!detail.empty()) detail_ = std::move(detail);
    stop_ = Stop::sent;
  }
  /// It broke the protocol (`what`): it is killed, and nothing it writes is trusted from now on.
  void broke_protocol(std::string what) {
    leaving_ = RecycleReason::protocol_violation;
    detail_ = std::move(what);
    stop_ = Stop::untrusted;
  }
  void killed() noexcept { kill_sent_ = true; }

 private:
  enum class Stop { none, sent, untrusted };

  bool ready_ = false;
  std::optional<RecycleReason> leaving_;
  std::string detail_;
  Stop stop_ = Stop::none;
  bool kill_sent_ = false;
};

}  // namespace procpool::detail
