// Job: one submitted job as the supervisor keeps it, and where its outcome goes.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <variant>

#include "outcome_promise.hpp"
#include "procpool/future.hpp"
#include "procpool/lent_buffer.hpp"
#include "procpool/options.hpp"
#include "procpool/result.hpp"

namespace procpool::detail {

/// The outcome of job `index` of a batch submitted with one BatchCompletion. One shared callback
/// and an index rather than a Completion per job: a Completion capturing both would not fit
/// std::function's inline storage, and a heap block per job, allocated by the submitting thread
/// and freed by the supervisor's, makes the two contend on the allocator's locks.
struct BatchSink {
  std::shared_ptr<BatchCompletion> callback;
  std::size_t index = 0;
};

/// Where a job's outcome goes: a Future (future-returning submit), a callback, or a batch's
/// callback.
/// Completion comes first so that a default-constructed Job (an empty function) allocates nothing;
/// a default OutcomePromise allocates its shared state.
using OutcomeSink = std::variant<Completion, OutcomePromise, BatchSink>;

/// The lent buffers of an in-place job (Pool::submit_in_place).
struct InPlaceBuffers {
  LentBuffer input;
  LentBuffer output;
};

/// Everything the supervisor keeps for one job. Owned by exactly one place at a time: the queue, a
/// worker's slot, or the list of outcomes about to be delivered; so when a job ends, nothing of it
/// remains anywhere.
struct Job {
  JobId id = 0;
  std::string name;
  Bytes payload;
  SubmitOptions options;
  std::chrono::milliseconds timeout{0};
  OutcomeSink sink;
  unsigned attempts = 0;
  /// The number of its job_start record in the request ring of the worker it was last sent to
  /// (job_claims.hpp).
  std::uint32_t start_number = 0;
  /// It has waited for the pool memory budget (counted once).
  bool held_for_memory = false;
  /// Pool::cancel accepted it after it started: its outcome is ErrorKind::cancelled whatever its
  /// worker answers, and its worker is killed at `cancel_kill_at` if it still runs it.
  std::optional<CancelMode> cancel;
  std::chrono::steady_clock::time_point cancel_kill_at{};
  /// Its worker was stopped because its SubmitOptions::deadline passed.
  bool deadline_passed = false;

  /// When a worker that started it at `started` must stop it: its timeout, its deadline, or its
  /// cancel.
  std::optional<std::chrono::steady_clock::time_point> must_stop_by(
      std::chrono::steady_clock::time_point started) const noexcept {
    std::optional<std::chrono::steady_clock::time_point> by;
    if (timeout.count() > 0) by = started + timeout;
    if (options.deadline && (!by || *options.deadline < *by)) by = options.deadline;
    if (cancel && (!by || cancel_kill_at < *by)) by = cancel_kill_at;
    return by;
  }
  /// Set for an in-place job, whose payload is empty: its bytes are in these buffers.
  std::unique_ptr<InPlaceBuffers> in_place;
};

}  // namespace procpool::detail
