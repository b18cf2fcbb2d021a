// Options: how a pool runs its workers (PoolOptions) and how one job is run (SubmitOptions).
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace procpool {

/// What Pool::submit does when the queue already holds PoolOptions::queue_capacity jobs.
enum class QueueFullPolicy {
  /// Fail the new job at once with ErrorKind::queue_full.
  reject,
  /// Block the submitting thread until there is room (or the pool shuts down).
  block,
};

/// Severity of a log line.
enum class LogLevel { debug, info, warning, error };

/// Receives one line per event, without a trailing newline. Called from the pool's supervisor
/// thread; must not block for long and must not call back into the same Pool's blocking methods.
using LogSink = std::function<void(LogLevel, std::string_view)>;

/// How a Pool runs its workers. Every field has a working default; the Pool constructor validates
/// them and throws ConfigError naming the field when one cannot work.
struct PoolOptions {
  /// Worker processes to keep running. 0 means one per hardware thread. Allowed: 0..1024.
  std::size_t workers = 0;

  /// The worker executable and its arguments. Empty (default): the host re-executes its own binary
  /// (/proc/self/exe), whose main() must call run_worker_if_requested() first. Otherwise element 0
  /// is the path of an executable whose main() calls worker_main(); the Pool constructor checks it
  /// exists and is executable. procpool appends its reserved arguments after the ones given here.
  std::vector<std::string> worker_command;

  /// Jobs that may wait for a worker before submit applies `when_queue_full`. Allowed: >= 1.
  std::size_t queue_capacity = 100'000;
  /// What submit does when the queue is full.
  QueueFullPolicy when_queue_full = QueueFullPolicy::reject;

  /// Largest payload submit accepts; larger ones fail with ErrorKind::payload_too_large.
  /// Allowed: 1 byte .. 4 GiB.
  std::size_t max_payload_bytes = std::size_t{256} << 20;
  /// Largest result a worker may return; larger ones fail with ErrorKind::payload_too_large.
  /// Allowed: 1 byte .. 4 GiB.
  std::size_t max_result_bytes = std::size_t{256} << 20;

  /// Bytes in each of a worker's two shared-memory rings (requests, responses). Payloads larger
  /// than a ring are streamed through it. A power of two, 64 KiB .. 1 GiB.
  std::size_t ring_bytes = std::size_t{1} << 20;

  /// Default per-job timeout, counted from the moment a worker starts the job; 0 = none. A job that
  /// overruns fails with ErrorKind::timeout: its worker gets SIGTERM, and SIGKILL `kill_grace`
  /// later.
  std::chrono::milliseconds job_timeout{0};
  /// Time between SIGTERM and SIGKILL when a worker is stopped for a timeout or at shutdown.
  std::chrono::milliseconds kill_grace{2000};
  /// How long a new worker has to attach to its shared memory and report ready before it is killed
  /// and counted as a failed start. Allowed: > 0.
  std::chrono::milliseconds start_timeout{10'000};

  /// After this many workers in a row fail to start (exit or time out before reporting ready), the
  /// pool is degraded: queued and new jobs fail at once with ErrorKind::pool_degraded, while it
  /// keeps trying to start a worker with exponential backoff. The first clean start heals it.
  /// Allowed: >= 1.
  unsigned max_consecutive_start_failures = 5;
  /// Backoff between failed starts: starts at `start_backoff_initial`, doubles, capped at
  /// `start_backoff_max`.
  std::chrono::milliseconds start_backoff_initial{50};
  std::chrono::milliseconds start_backoff_max{10'000};

  /// How long ~Pool() lets queued and running jobs finish before it kills workers (see
  /// Pool::shutdown).
  std::chrono::milliseconds destructor_drain{5'000};

  /// Lines of each worker's stderr kept for error reports (JobError::worker_stderr). Allowed:
  /// 0..1000.
  std::size_t stderr_tail_lines = 20;

  /// Where the pool's log lines and its workers' stderr go. Empty (default): one line per event at
  /// info level and above to stderr, formatted "procpool: ...".
  LogSink log;
};

/// How one job is run.
struct SubmitOptions {
  /// Timeout for this job, counted from when a worker starts it; 0 = use PoolOptions::job_timeout.
  std::chrono::milliseconds timeout{0};
  /// The caller asserts that running the job twice is harmless. Only idempotent jobs are retried.
  bool idempotent = false;
  /// Total attempts for an idempotent job whose worker crashed, timed out or was killed for memory
  /// (never after a handler error). Values above 1 require `idempotent`. Allowed: 1..100.
  unsigned max_attempts = 1;
};

}  // namespace procpool
