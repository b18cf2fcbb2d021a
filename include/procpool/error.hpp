// The error model, stated once.
//
// procpool reports two kinds of failure, and never mixes them:
//
//  * A job's outcome is a value. Every submitted job ends in exactly one JobResult: its bytes, or a
//    JobError whose ErrorKind says what happened (the handler threw, the worker crashed, the job
//    timed out, it was cancelled, rejected, ...). Pool::submit never throws because of what a job
//    did.
//  * Misuse of the API when something is constructed throws: PoolOptions that cannot work make the
//    Pool constructor throw ConfigError, whose message names the field and the values it accepts.
//
// Destructors never throw.
#pragma once

#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include "procpool/export.hpp"

namespace procpool {

/// What went wrong with a job. Stable: values are only ever added.
enum class ErrorKind {
  /// The job's handler threw; JobError::message holds what() of the exception.
  handler_error,
  /// The worker running the job died: a signal or an exit code is in the error, with the last lines
  /// the worker wrote to stderr.
  worker_crashed,
  /// The job ran longer than its timeout: its worker got SIGTERM, then SIGKILL after the grace
  /// period (PoolOptions::kill_grace).
  timeout,
  /// The worker exceeded a memory limit and was killed while running the job.
  memory_limit,
  /// The caller cancelled the job (Pool::cancel): taken out of the queue, or stopped while a worker
  /// ran it (CancelMode::interrupt or kill); `attempts` says whether it had started.
  cancelled,
  /// The pool's queue was full and the pool rejects rather than blocks (QueueFullPolicy::reject,
  /// or a submit from a completion callback, which must not block the supervisor).
  queue_full,
  /// The pool was shutting down (or already stopped) and did not run the job.
  shutting_down,
  /// No handler is registered under the job's name in the worker.
  unknown_job,
  /// The payload, or the result, is larger than the pool's configured limit.
  payload_too_large,
  /// The worker wrote something the supervisor could not accept (corrupt frame, wrong job id, a
  /// length past the segment, ...). The worker was killed.
  protocol_violation,
  /// The restart-storm breaker tripped: workers kept crashing or failing to start (see
  /// PoolOptions::restart_storm_threshold). The pool rejects work until a worker starts cleanly.
  pool_degraded,
  /// The request was malformed before it reached a worker (e.g. an empty job name, or
  /// max_attempts == 0), or was made where it cannot run: Pool::call from a Completion callback,
  /// or any job in a fork of the pool's host.
  invalid_request,
  /// A typed job's request or response bytes could not be decoded by its codec.
  codec_error,
  /// The job's SubmitOptions::deadline passed: before it was submitted, while it was queued or
  /// waiting to be retried (it was not dispatched again), or while it ran (its worker was stopped
  /// as for a timeout).
  deadline_exceeded,
};

/// A stable lower_snake_case name for `kind` ("worker_crashed", "timeout", ...). Never throws.
PROCPOOL_API std::string_view to_string(ErrorKind kind) noexcept;

/// Why a job failed. Carried by a JobResult that is not ok().
struct JobError {
  /// What happened; see ErrorKind and docs/error-model.md.
  ErrorKind kind = ErrorKind::handler_error;
  /// Human-readable explanation; for handler_error, the exception's message.
  std::string message;
  /// For worker_crashed/timeout/memory_limit: the worker's exit code, if it exited.
  std::optional<int> exit_code;
  /// For worker_crashed/timeout/memory_limit: the signal that ended the worker, if one did.
  std::optional<int> signal;
  /// The last lines the worker wrote to stderr or stdout before it died (every kind that ends
  /// with the worker's death: worker_crashed, timeout, memory_limit, protocol_violation,
  /// shutting_down).
  std::string worker_stderr;
  /// How many times the job was started on a worker (0 if it never reached one).
  unsigned attempts = 0;
};

/// Thrown by constructors (Pool, JobRegistry::add) when given options that cannot work. what()
/// names the offending field and the values it accepts; field() returns the field alone.
class PROCPOOL_API ConfigError : public std::invalid_argument {
 public:
  /// `field` names the option (e.g. "PoolOptions::workers"); `message` says what is wrong.
  ConfigError(std::string field, const std::string& message);
  /// The name of the offending field, as given to the constructor.
  const std::string& field() const noexcept { return field_; }

 private:
  std::string field_;
};

}  // namespace procpool
