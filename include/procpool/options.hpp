// Options: how a pool runs its workers (PoolOptions) and how one job is run (SubmitOptions).
//
// PoolOptions is the place to start: every field has a working default. The option types of each
// concern have headers of their own, all included here:
//
//   recycle_policy.hpp   RecyclePolicy, MemoryMetric: when a worker is replaced
//   memory_options.hpp   MemoryCgroupOptions, MemoryBudget: kernel caps, a pool memory budget
//   dispatch_policy.hpp  QueueFullPolicy, PrefetchPolicy, SpinPolicy: how jobs reach workers
//   security.hpp         WorkerSecurity, WorkerEnvironment, RunAs: what a worker may do and see
//
// The guides behind them: docs/policies.md, docs/memory.md, docs/tuning.md, docs/security.md.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "procpool/dispatch_policy.hpp"
#include "procpool/events.hpp"
#include "procpool/memory_options.hpp"
#include "procpool/recycle_policy.hpp"
#include "procpool/security.hpp"

namespace procpool {

/// Severity of a log line.
enum class LogLevel { debug, info, warning, error };

/// Receives one line per event, without a trailing newline. Called mostly from the pool's
/// supervisor thread while it holds the pool's state lock, and also from a submitting or
/// cancelling thread whose completion callback threw: it must be quick, thread-safe, and must not
/// call any method of the same Pool.
using LogSink = std::function<void(LogLevel, std::string_view)>;

/// How each new worker process is made.
enum class StartMode {
  /// Every worker is a fresh execution of the worker executable (default): it shares nothing with
  /// any earlier process, at the cost of loading the program each time (about 1-2 ms).
  exec,
  /// Every worker is a fork of a fork server, one more execution of the worker executable: a start
  /// in a fraction of the time, for pools that recycle often (RecyclePolicy::max_jobs = 1). main()
  /// must call run_worker_if_requested() before it starts any thread, and what it did before is
  /// copied into every worker. See docs/gotchas.md, "StartMode::fork_server".
  fork_server,
};

/// How Pool::cancel treats a job a worker has started. A job still queued, or sent ahead to a
/// worker that has not started it, is taken back and ends ErrorKind::cancelled under every mode,
/// without touching any worker.
enum class CancelMode {
  /// Only a job not yet started: a started one runs on.
  if_queued,
  /// A started job is asked to stop (JobContext::stop_requested(), a flag in shared memory, no
  /// signal); its worker is killed if it still runs it after PoolOptions::kill_grace.
  interrupt,
  /// A started job's worker is killed now (SIGKILL) and replaced. The jobs sent ahead behind it go
  /// back to the queue; the kill waits (briefly) for the worker to reach the job, so that it never
  /// ends one the worker read meanwhile.
  kill,
};

/// What a worker does with a job's lent buffers (Pool::lend) once the job's handler returns.
enum class LentBuffersAfterJob {
  /// Before the outcome, the worker takes its access to both buffers away: a pointer the handler
  /// kept can no longer touch a buffer the caller owns again (trying kills the worker with
  /// SIGSEGV). Default.
  inaccessible,
  /// The worker leaves the buffers mapped as the job had them: faster where touching a page again
  /// is costly (some VMs; docs/benchmarks.md, "zero-copy"), but a kept pointer can reach a buffer
  /// after its job's outcome. Only for handlers trusted not to keep one.
  kept_accessible,
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

  /// How each worker process is made: a fresh exec (default) or a fork of a fork server.
  StartMode start_mode = StartMode::exec;

  /// The worker's environment, resource limits, user and privileges (docs/security.md).
  WorkerSecurity security;

  /// The `oom_score_adj` of every process procpool starts (workers, the fork server, the guards),
  /// set before any of their code runs. The default, 1000, makes the kernel's OOM killer pick a
  /// worker before the host. 0: not set (each inherits the host's value). Allowed: -1000..1000;
  /// below the host's own value needs CAP_SYS_RESOURCE. See docs/memory.md, "The OOM score".
  int worker_oom_score_adj = 1000;

  /// Per-worker memory cgroups capped by the kernel (off by default).
  MemoryCgroupOptions worker_cgroups;
  /// A ceiling on the workers' memory together, which jobs wait for (none by default).
  MemoryBudget memory_budget;

  /// Jobs that may wait for a worker before submit applies `when_queue_full`. Allowed: >= 1.
  std::size_t queue_capacity = 100'000;
  /// What submit does when the queue is full.
  QueueFullPolicy when_queue_full = QueueFullPolicy::reject;
  /// How many jobs a busy worker may be sent ahead (short jobs only).
  PrefetchPolicy prefetch;
  /// Whether the supervisor and workers poll briefly before sleeping.
  SpinPolicy spin;

  /// Largest payload submit accepts; larger ones fail with ErrorKind::payload_too_large.
  /// Allowed: 1 byte .. 4 GiB.
  std::size_t max_payload_bytes = std::size_t{256} << 20;
  /// Largest result a worker may return; larger ones fail with ErrorKind::payload_too_large.
  /// Allowed: 1 byte .. 4 GiB.
  std::size_t max_result_bytes = std::size_t{256} << 20;
  /// Whether an in-place job's worker can still reach its lent buffers after the job.
  LentBuffersAfterJob lent_buffers_after_job = LentBuffersAfterJob::inaccessible;

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
  /// has not after this long; a worker not yet ready is SIGKILLed at once. Also how long a job
  /// cancelled with CancelMode::interrupt has to return before its worker is killed.
  std::chrono::milliseconds kill_grace{2000};
  /// How long a new worker has to attach to its shared memory and report ready before it is killed
  /// and counted as a failed start. With StartMode::fork_server it counts from the request to the
  /// fork server, which is replaced if it has not answered by then (docs/architecture.md, "The
  /// fork server"). Allowed: > 0.
  std::chrono::milliseconds start_timeout{10'000};

  /// Restart-storm breaker: when this many workers in a row fail to start or crash (with no job
  /// completed in between) within `restart_storm_window`, the pool is degraded: queued and new jobs
  /// fail at once with ErrorKind::pool_degraded until a worker starts cleanly. Planned recycles
  /// never count. See docs/policies.md, "Crashes and restart storms". Allowed: >= 1.
  unsigned restart_storm_threshold = 5;
  /// The window within which `restart_storm_threshold` failures in a row degrade the pool.
  /// Allowed: > 0.
  std::chrono::milliseconds restart_storm_window{60'000};
  /// After a worker fails to start or crashes, no worker (replacement, recycle successor or
  /// scale-up) is started for `restart_backoff_initial`, doubling with each further failure of the
  /// run, capped at `restart_backoff_max`. A job completed by any worker ends the run.
  std::chrono::milliseconds restart_backoff_initial{50};
  /// The cap on that doubling backoff. Allowed: >= restart_backoff_initial.
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
  /// Timeout for one attempt of this job, counted from dispatch to a worker; 0 = use
  /// PoolOptions::job_timeout.
  std::chrono::milliseconds timeout{0};
  /// When the whole life of the job ends, retries included (unset: never). A job still queued at
  /// its deadline fails with ErrorKind::deadline_exceeded and is never dispatched; a running one is
  /// stopped as for a timeout and fails with deadline_exceeded; a retry never starts after it. A
  /// deadline already past at submit fails the job at once.
  std::optional<std::chrono::steady_clock::time_point> deadline;
  /// The caller asserts that running the job twice is harmless. Only idempotent jobs are retried.
  bool idempotent = false;
  /// Total attempts for an idempotent job whose worker crashed, timed out or was killed for memory
  /// (never after a handler error). Values above 1 require `idempotent`. Allowed: 1..100.
  unsigned max_attempts = 1;
  /// How long a job to be retried waits before its second attempt, doubling before each attempt
  /// after that; each wait is drawn between half and all of that (jitter), so that jobs failed
  /// together are not retried together. The job waits without holding a worker, and can be
  /// cancelled or pass its deadline meanwhile. 0 (default): retried at once.
  std::chrono::milliseconds retry_backoff{0};
  /// The most memory the job may add to its worker while it runs, for PoolOptions::memory_budget
  /// (unused without one). 0 (default): the largest change in a worker's memory across one job of
  /// this name so far (JobStats::memory_delta_max_bytes), or nothing before one has been read. Give
  /// it for jobs whose memory peaks and falls back, which the change across a job does not show.
  std::uint64_t expected_memory_bytes = 0;
  /// Where the job waits in the queue: a job with a higher priority is given to a worker before
  /// every queued job with a lower one; jobs of the same priority go in the order submitted
  /// (FIFO). Default 0; any int is valid, negative ones run after the default. Priorities are
  /// strict, with no aging: while jobs of a higher priority keep arriving, a lower one waits, for
  /// ever if they never stop. A job already sent to a worker is not overtaken (docs/policies.md,
  /// "Priorities").
  int priority = 0;
};

}  // namespace procpool
