// Options: how a pool runs its workers (PoolOptions) and how one job is run (SubmitOptions).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "procpool/events.hpp"

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

/// Receives one line per event, without a trailing newline. Called mostly from the pool's
/// supervisor thread while it holds the pool's state lock, and also from the thread constructing
/// the Pool and from a submitting or cancelling thread whose completion callback threw: it must be
/// quick, thread-safe, and must not call any method of the same Pool.
using LogSink = std::function<void(LogLevel, std::string_view)>;

/// Which memory figure the recycle limits are compared against.
enum class MemoryMetric {
  /// Resident set size from /proc/<pid>/statm: cheap; counts shared pages (libraries, the
  /// segment) in full in every worker.
  rss,
  /// Proportional set size from /proc/<pid>/smaps_rollup: shared pages divided among their users.
  pss,
  /// Unique set size (private clean + private dirty from smaps_rollup): what killing the worker
  /// would give back.
  uss,
};

/// When a worker is replaced by a fresh one. Every field is optional (0 = off) and they combine:
/// the first that applies wins, and the replacement records it as its reason.
///
/// "Retire" means: the worker takes no new job, a replacement is spawned at once, and the worker
/// exits after its current job (or at once if idle). "Kill" means SIGKILL now; its job fails with
/// ErrorKind::memory_limit (or is retried, if idempotent).
struct RecyclePolicy {
  /// Retire a worker after this many jobs. 0 = no limit.
  std::uint64_t max_jobs = 0;
  /// Each worker's limit is max_jobs plus a random 0..max_jobs_jitter, so workers started together
  /// do not all retire together.
  std::uint64_t max_jobs_jitter = 0;

  /// Retire a worker this long after it became ready. 0 = no limit.
  std::chrono::milliseconds max_lifetime{0};
  /// Random extra lifetime per worker, 0..max_lifetime_jitter.
  std::chrono::milliseconds max_lifetime_jitter{0};

  /// A worker idle this long is recycled into a fresh one; or, when the pool has more workers than
  /// PoolOptions::min_workers, stopped (scale-down). 0 = never.
  std::chrono::milliseconds idle_timeout{0};

  /// Memory above this after a job (or at a sample): retire after the current job. 0 = off.
  /// A worker already above it right after start-up is reported once and kept (a fresh worker
  /// cannot do better), until a hard limit or another policy applies.
  std::uint64_t rss_soft_limit = 0;
  /// Memory above this at any reading: SIGKILL now; the job fails with memory_limit. 0 = off.
  std::uint64_t rss_hard_limit = 0;
  /// Leak detection: memory more than this above the worker's own baseline (its reading after
  /// `baseline_after_jobs` jobs): retire after the current job. 0 = off.
  std::uint64_t rss_growth_limit = 0;
  /// Jobs a worker runs before its baseline is taken (warm-up: caches, lazy initialisation).
  std::uint64_t baseline_after_jobs = 1;

  /// What the three memory limits compare against.
  MemoryMetric memory_metric = MemoryMetric::rss;
  /// How often a busy worker's memory is read, so a job that balloons mid-run meets the hard
  /// limit before the kernel's OOM killer. Memory is also read after every job. Allowed: >= 10 ms.
  std::chrono::milliseconds memory_sample_interval{250};

  /// RLIMIT_AS for each worker in bytes (its allocations fail beyond it). 0 = inherit the host's.
  std::uint64_t address_space_limit = 0;

  /// Workers that may be retiring at once for max_lifetime or idle_timeout (which strike workers
  /// started together at the same moment); more wait their turn, serving meanwhile, so a policy
  /// never replaces the whole pool in one instant. Job-count and memory retirements are each
  /// worker's own and are never postponed. Allowed: >= 1.
  std::size_t max_concurrent_recycles = 1;
};

/// How a Pool runs its workers. Every field has a working default; the Pool constructor validates
/// them and throws ConfigError naming the field when one cannot work.
struct PoolOptions {
  /// Worker processes to keep running (the maximum, when min_workers is set). 0 means one per
  /// hardware thread. Allowed: 0..1024.
  std::size_t workers = 0;
  /// Scale between min_workers and workers: idle workers past RecyclePolicy::idle_timeout are
  /// stopped down to min_workers, and workers are added while jobs wait. nullopt (default): a fixed
  /// pool of `workers`. Allowed: 0..workers.
  std::optional<std::size_t> min_workers;

  /// When workers are replaced (jobs, lifetime, idle, memory).
  RecyclePolicy recycle;

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

  /// Default per-job timeout, counted from dispatch to a worker (so it includes streaming the
  /// payload); 0 = none, and a handler that hangs then holds its worker and its future until
  /// shutdown. A job that overruns fails with ErrorKind::timeout: its worker gets SIGTERM, and
  /// SIGKILL `kill_grace` later.
  std::chrono::milliseconds job_timeout{0};
  /// Time between SIGTERM and SIGKILL for a worker stopped for a timeout or, while running a job,
  /// at shutdown. An idle worker at shutdown is asked to exit through its ring and SIGKILLed if it
  /// has not after this long; a worker not yet ready is SIGKILLed at once.
  std::chrono::milliseconds kill_grace{2000};
  /// How long a new worker has to attach to its shared memory and report ready before it is killed
  /// and counted as a failed start. Allowed: > 0.
  std::chrono::milliseconds start_timeout{10'000};

  /// Restart-storm breaker: when this many workers in a row fail to start or crash (with no job
  /// completed in between) within `restart_storm_window`, the pool is degraded: queued and new jobs
  /// fail at once with ErrorKind::pool_degraded, while it keeps trying to start a worker with
  /// backoff. The next worker that starts cleanly heals it, but the run of failures goes on until a
  /// job completes, so one more failure degrades it again at once. Planned recycles never count;
  /// a worker killed by rss_hard_limit before its first job does (the limit is below a fresh
  /// worker's size). Allowed: >= 1.
  unsigned restart_storm_threshold = 5;
  std::chrono::milliseconds restart_storm_window{60'000};
  /// After a worker fails to start or crashes, no worker (replacement, recycle successor or
  /// scale-up) is started for `restart_backoff_initial`, doubling with each further failure of the
  /// run, capped at `restart_backoff_max`. A job completed by any worker ends the run.
  std::chrono::milliseconds restart_backoff_initial{50};
  std::chrono::milliseconds restart_backoff_max{10'000};

  /// How long ~Pool() lets queued and running jobs finish before it kills workers (see
  /// Pool::shutdown).
  std::chrono::milliseconds destructor_drain{5'000};

  /// Lines of each worker's output kept for error reports (JobError::worker_stderr; a worker's
  /// stdout and stderr share one pipe). Allowed: 0..1000.
  std::size_t stderr_tail_lines = 20;

  /// Receives a structured PoolEvent for each lifecycle event (spawned, ready, retiring, exited,
  /// job failed, degraded, ...). Empty: none.
  EventCallback on_event;

  /// Where the pool's log lines and its workers' stderr go. Empty (default): one line per event at
  /// info level and above to stderr, formatted "procpool: ...".
  LogSink log;
};

/// How one job is run.
struct SubmitOptions {
  /// Timeout for this job, counted from dispatch to a worker; 0 = use PoolOptions::job_timeout.
  std::chrono::milliseconds timeout{0};
  /// The caller asserts that running the job twice is harmless. Only idempotent jobs are retried.
  bool idempotent = false;
  /// Total attempts for an idempotent job whose worker crashed, timed out or was killed for memory
  /// (never after a handler error). Values above 1 require `idempotent`. Allowed: 1..100.
  unsigned max_attempts = 1;
};

}  // namespace procpool
