// Options: how a pool runs its workers (PoolOptions) and how one job is run (SubmitOptions).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
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
/// supervisor thread while it holds the pool's state lock, and also from a submitting or
/// cancelling thread whose completion callback threw: it must be quick, thread-safe, and must not
/// call any method of the same Pool.
using LogSink = std::function<void(LogLevel, std::string_view)>;

/// Which memory figure the recycle limits are compared against.
enum class MemoryMetric {
  /// Resident set size from `/proc/<pid>/statm`: cheap; counts shared pages (libraries, the
  /// segment) in full in every worker.
  rss,
  /// Proportional set size from `/proc/<pid>/smaps_rollup`: shared pages divided among their users.
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
  std::uint64_t memory_soft_limit = 0;
  /// Memory above this at any reading: SIGKILL now; the job fails with memory_limit. 0 = off.
  std::uint64_t memory_hard_limit = 0;
  /// Leak detection: memory more than this above the worker's own baseline (its reading after
  /// `baseline_after_jobs` jobs): retire after the current job. 0 = off.
  std::uint64_t memory_growth_limit = 0;
  /// Jobs a worker runs before its baseline is taken (warm-up: caches, lazy initialisation).
  std::uint64_t baseline_after_jobs = 1;

  /// What the three memory limits compare against.
  MemoryMetric memory_metric = MemoryMetric::rss;
  /// How often a busy worker's memory is read, so a job that balloons mid-run meets the hard
  /// limit before the kernel's OOM killer. Memory is also read after each job (see
  /// memory_read_min_interval). Allowed: >= 10 ms.
  std::chrono::milliseconds memory_sample_interval{250};
  /// Memory is read after each job, but not again within this interval of the last reading: a job
  /// that ends sooner (back-to-back jobs of a few microseconds, where one reading of
  /// `/proc/<pid>/statm` would cost a third of a round trip) leaves its reading to a later one.
  /// Nothing goes unmeasured: jobs read together share their reading's change in the job stats (a
  /// job of another name takes a reading first), and a worker left idle with jobs unread is read
  /// by the periodic sample (after Pool::call, which lets the supervisor thread sleep on, when that
  /// thread next wakes or the worker's next job ends). The limits see the growth of such jobs at
  /// that reading; it is no more than this interval's worth of work can allocate. Until the
  /// worker's baseline is taken, and for a retiring worker, memory is read after every job.
  /// 0 = after every job. Allowed: 0..memory_sample_interval.
  std::chrono::microseconds memory_read_min_interval{100};

  /// RLIMIT_AS for each worker in bytes (its allocations fail beyond it). 0 = inherit the host's.
  std::uint64_t address_space_limit = 0;

  /// Workers that may be retiring at once for max_lifetime or idle_timeout (which strike workers
  /// started together at the same moment); more wait their turn, serving meanwhile, so a policy
  /// never replaces the whole pool in one instant. Job-count and memory retirements are each
  /// worker's own and are never postponed. Allowed: >= 1.
  std::size_t max_concurrent_recycles = 1;
};

/// Sending jobs to a worker before it has finished the one it runs, so that short jobs run back to
/// back instead of each waiting for a round trip through the supervisor.
///
/// A prefetched job sits in the worker's request ring: it cannot be cancelled any more. If the job
/// ahead of it runs for `when_jobs_take_under` or longer, or its worker is stopped (a timeout, a
/// memory kill, shutdown) or dies before reaching it, it goes back to the front of the queue, for
/// any worker, without counting as an attempt. Its timeout counts from the moment the worker
/// reaches it (the job ahead finished).
/// Prefetching adapts to the jobs: a worker gets jobs ahead only while its recent jobs were short
/// (`when_jobs_take_under`), and only as many as it should finish within `max_work_ahead`, so a
/// job never waits long behind others in one worker while another worker could run it. A worker
/// never holds more jobs than its RecyclePolicy::max_jobs leaves it.
struct PrefetchPolicy {
  /// Most jobs one worker holds ahead of the one it runs. 0 = off: one job per worker at a time.
  /// Allowed: 0..4096.
  std::size_t max_jobs_ahead = 256;
  /// Prefetch to a worker only while a moving average of its job times (as the supervisor sees
  /// them, from dispatch to result) is under this. Allowed: >= 0.
  std::chrono::microseconds when_jobs_take_under{1000};
  /// Most work one worker holds ahead, estimated as that moving average times the jobs held: the
  /// longest a prefetched job should wait for the ones ahead of it. With 2 µs jobs the cap is
  /// max_jobs_ahead; with 100 µs jobs it is 10. Allowed: >= 0 (0 = no job ahead).
  std::chrono::microseconds max_work_ahead{1000};
};

/// Whether the supervisor and the workers poll briefly for the next event before they sleep: CPU
/// time that would otherwise be idle, traded for latency. Where idle CPUs halt (virtual machines,
/// power saving), waking a thread on another core costs tens of microseconds each way; a thread
/// that polls on a free core sees the same event in well under one.
///
/// Adaptive, so that it does not take CPU time that jobs need. Only while fewer of the pool's
/// workers run jobs or start up than the machine has CPUs: then the supervisor polls for a result
/// while a job runs whose recent run times are under `budget` (or for the next submit right after
/// delivering outcomes), and a worker polls for its next request after each result; while a payload
/// or result of several ring records streams, both poll for ring space or data. Each turn of a
/// poll yields the CPU (sched_yield), and a yield that took long and let another thread run ends
/// the poll: that CPU is not free (one that took long with no switch, a virtual CPU the hypervisor
/// held for a moment, does not). A poller whose polls keep running out of budget backs off, down to
/// one poll in 64 waits. `procpool-bench --only spin` measures it against `enabled = false` side by
/// side, with both CPUs busy and with everything on one CPU (docs/benchmarks.md).
struct SpinPolicy {
  /// false: sleep at once, always. Default true.
  bool enabled = true;
  /// Longest one poll lasts before its thread sleeps. Allowed: 1..1000 µs.
  std::chrono::microseconds budget{200};
};

/// Where a worker's environment variables come from.
enum class EnvironmentMode {
  /// Every variable of the host, as it is when the worker is spawned (what a child process gets by
  /// default, and what a worker that needs credentials from the environment expects).
  inherit,
  /// Only the host's variables named in WorkerEnvironment::allow, plus WorkerEnvironment::set.
  allow_list,
};

/// The environment a worker starts with. Applied when each worker is spawned; the variables are
/// read from the host at that moment (do not setenv() in the host while a pool may be spawning).
struct WorkerEnvironment {
  /// inherit (default) or allow_list.
  EnvironmentMode mode = EnvironmentMode::inherit;
  /// With allow_list: the host variables a worker gets, if the host has them. A name ending in '*'
  /// is a prefix ("AZURE_SPEECH_*"). Ignored with inherit.
  std::vector<std::string> allow = {"PATH",   "HOME",     "LANG",        "LANGUAGE",
                                    "LC_ALL", "LC_CTYPE", "LC_MESSAGES", "TZ",
                                    "TMPDIR", "USER",     "LOGNAME"};
  /// Set in every worker, in either mode, over any value the host has: {name, value}. Names must
  /// be unique, non-empty and without '='; names and values without NUL characters.
  std::vector<std::pair<std::string, std::string>> set;
};

/// The user and group a worker runs as (PoolOptions requires a host running as root for this).
struct RunAs {
  /// The user id the worker runs as (setuid in the child, before exec).
  std::uint32_t uid = 0;
  /// The group id the worker runs as (setgid, with no supplementary groups).
  std::uint32_t gid = 0;
};

/// What a worker process may do and see. The defaults change nothing: a worker runs as the host's
/// user, with its environment and its resource limits. Everything here is applied in the child
/// between fork and exec, before any of the worker's code runs, and a worker cannot undo it.
/// See docs/security.md for the trust boundary and the recommended settings.
/// (RLIMIT_AS is RecyclePolicy::address_space_limit.)
struct WorkerSecurity {
  /// The variables a worker starts with.
  WorkerEnvironment environment;

  /// RLIMIT_NOFILE (soft and hard) for each worker: it cannot open a descriptor numbered at or
  /// above this. 0 (default) = inherit the host's. Allowed: 0 or 16 .. the host's hard limit
  /// (above it only when the host runs as root).
  std::uint64_t max_open_files = 0;

  /// RLIMIT_CORE (soft and hard) for each worker, in bytes. nullopt (default) = inherit the
  /// host's. 0 = a crashing worker writes no core dump, so its payloads (audio, documents) never
  /// land on disk through one; recommended wherever payloads are sensitive. Allowed: up to the
  /// host's hard limit (above it only when the host runs as root).
  std::optional<std::uint64_t> core_dump_limit;

  /// Run each worker as this user and group, with no supplementary groups. nullopt (default): the
  /// host's. Only a host running as root (effective uid 0) may set it; the Pool constructor throws
  /// ConfigError otherwise. The worker's shared memory is handed to this user; the worker's
  /// executable (worker_command[0], or this program) must be executable by it. A spawn whose
  /// drop fails counts as a start failure, with the failing call in the log.
  std::optional<RunAs> run_as;

  /// PR_SET_NO_NEW_PRIVS: neither the worker nor anything it executes can gain privileges
  /// (set-user-ID binaries, file capabilities). Default false.
  bool no_new_privileges = false;

  /// false: the worker clears PR_SET_DUMPABLE before its first job (exec sets it again, so the
  /// worker does it itself). It then writes no core dump, and other processes of its user (its
  /// sibling workers included) can no longer ptrace it or read its memory, environment or
  /// descriptors through /proc. A host needs CAP_SYS_PTRACE to read its smaps_rollup then, so a
  /// host that is not root cannot combine it with MemoryMetric::pss or uss (ConfigError).
  /// Default true (as any process).
  bool dumpable = true;
};

/// How each new worker process is made.
enum class StartMode {
  /// Every worker is a fresh execution of the worker executable (default): it shares nothing with
  /// any earlier process, at the cost of loading the program each time (about 1-2 ms).
  exec,
  /// The pool executes the worker executable once more, as a fork server, which stops just before
  /// it would attach to a segment; each worker is then a fork of that process. A worker starts in
  /// a fraction of the time (no program load, no dynamic linking, no static initialisation), which
  /// matters when workers are recycled often (RecyclePolicy::max_jobs = 1). Every worker is still a
  /// new process whose memory is the fork server's, never an earlier worker's. The fork server is
  /// started when the first worker is, with the same WorkerSecurity, is restarted if it dies, and
  /// exits with the pool. Requirements: main() calls run_worker_if_requested() (or worker_main())
  /// before starting any thread or opening anything a job must not share, because what it did
  /// before is copied into every worker (see docs/gotchas.md: random seeds, address layout). A
  /// fork server whose process runs more than one thread by then (a static initialiser started
  /// one) forks nothing: every start fails, and the log says why and what to do.
  fork_server,
};

/// Each worker in a memory cgroup of its own, capped by the kernel (docs/memory.md). A job whose
/// allocations cross the cap ends as ErrorKind::memory_limit in tens of milliseconds (the kernel's
/// reclaim, then its OOM killer), whatever RecyclePolicy::memory_sample_interval is, and no other
/// process is touched: the OOM killer acts inside that cgroup alone. Needs a memory cgroup the host
/// may make children in: root (or a delegated directory) on cgroup v1; on cgroup v2 also a parent
/// that holds no processes itself (the "no internal processes" rule), such as a systemd unit with
/// `Delegate=yes` and `DelegateSubgroup=` (the service in a subgroup, the unit's cgroup named as
/// `parent`), a container whose entrypoint moved itself into a leaf cgroup, or a named delegated
/// directory.
struct MemoryCgroupOptions {
  /// false (default): workers run in the host's own memory cgroup.
  bool enabled = false;
  /// The cap, in bytes (cgroup v2 memory.max with memory.swap.max 0; v1 memory.limit_in_bytes and
  /// memory.memsw.limit_in_bytes). 0 (default): RecyclePolicy::memory_hard_limit, which must then
  /// be set. Allowed: 0 or at least 16 MiB.
  std::uint64_t max_bytes = 0;
  /// cgroup v2 only: memory.high, above which the kernel reclaims the worker's memory and slows its
  /// allocations down. 0 (default): not set. Allowed: 0, or below the cap.
  std::uint64_t high_bytes = 0;
  /// The memory cgroup directory the pool makes its own in (`procpool-<pid namespace>-<pid>-<n>`,
  /// holding `worker-<id>` per worker). Empty (default): the host's own memory cgroup, found from
  /// /proc/self/cgroup and /proc/self/mountinfo.
  std::string parent;
  /// What happens when this machine does not allow the cgroups (no memory controller, no right to
  /// make children, cgroup v2's rule): false (default), the pool logs why once, runs with the
  /// sampled limits alone, and PoolStats::memory.enforcement says so; true, the Pool constructor
  /// throws ConfigError saying why.
  bool required = false;
};

/// A ceiling on the memory of all the pool's workers together (docs/memory.md). A queued job is
/// given a worker only while the workers' memory plus the job's expected peak
/// (SubmitOptions::expected_memory_bytes, else the largest change its name has shown) fits; the
/// job at the head of the queue waits until it does, and those behind it wait for it. With no
/// worker running a job or leaving, it runs whatever the figures say, so nothing waits forever. A
/// job whose expected peak alone exceeds the budget fails at once with ErrorKind::memory_limit.
struct MemoryBudget {
  /// The budget in bytes. 0 (default): none (unless host_limit_fraction is set).
  std::uint64_t bytes = 0;
  /// "Auto": this fraction of the memory limit of the host's memory cgroup (a container's limit)
  /// when it has one; without one the pool logs so once and runs with no budget. 0 (default): not
  /// used. Allowed: 0, or above 0 up to 1, and not together with `bytes`.
  double host_limit_fraction = 0;
};

/// What a worker does with a job's lent buffers (Pool::lend) once the job's handler returns.
enum class LentBuffersAfterJob {
  /// Before the outcome, the worker takes its access to both buffers away: a pointer the handler
  /// kept, or a thread it left running, can no longer touch a buffer the caller owns again (trying
  /// kills the worker with SIGSEGV). The mappings stay, so a later job on the same buffers maps
  /// nothing; but where a page-table change is costly (some VMs), touching each page again is too:
  /// docs/benchmarks.md, "zero-copy".
  inaccessible,
  /// The worker leaves the buffers mapped as the job had them until a job needs them otherwise:
  /// faster on such machines, but a handler's kept pointer can read or write a buffer after its
  /// job's outcome. Only for handlers trusted not to keep one. Either way an input is writable
  /// through no mapping in the worker while its job runs.
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

  /// The `oom_score_adj` of every process procpool starts (workers, the fork server, the guards
  /// of workers' process groups), set before any of their code runs. At the default, 1000, the
  /// kernel's OOM killer, when the host's memory cgroup or the machine runs out, picks a worker
  /// (the largest) before the host, whatever their sizes: a leak that outruns
  /// RecyclePolicy::memory_sample_interval then costs one job, not the service. 0: not set (each
  /// inherits the host's value, and the kernel picks by size alone). Allowed: -1000..1000; a
  /// value below the host's own needs CAP_SYS_RESOURCE (ConfigError otherwise). See
  /// docs/memory.md.
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
  /// has not after this long; a worker not yet ready is SIGKILLed at once.
  std::chrono::milliseconds kill_grace{2000};
  /// How long a new worker has to attach to its shared memory and report ready before it is killed
  /// and counted as a failed start. With StartMode::fork_server it runs from the request to the
  /// fork server (the first includes the server's own start): a server that has not answered by
  /// then is replaced, and every start it has not answered fails. The supervisor thread goes on
  /// meanwhile; it never waits for the server. Allowed: > 0.
  std::chrono::milliseconds start_timeout{10'000};

  /// Restart-storm breaker: when this many workers in a row fail to start or crash (with no job
  /// completed in between) within `restart_storm_window`, the pool is degraded: queued and new jobs
  /// fail at once with ErrorKind::pool_degraded, while it keeps trying to start a worker with
  /// backoff. The next worker that starts cleanly heals it, but the run of failures goes on until a
  /// job completes, so one more failure degrades it again at once. Planned recycles never count;
  /// a worker killed by memory_hard_limit before its first job does (the limit is below a fresh
  /// worker's size). Allowed: >= 1.
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
  /// Timeout for this job, counted from dispatch to a worker; 0 = use PoolOptions::job_timeout.
  std::chrono::milliseconds timeout{0};
  /// The caller asserts that running the job twice is harmless. Only idempotent jobs are retried.
  bool idempotent = false;
  /// Total attempts for an idempotent job whose worker crashed, timed out or was killed for memory
  /// (never after a handler error). Values above 1 require `idempotent`. Allowed: 1..100.
  unsigned max_attempts = 1;
  /// The most memory the job may add to its worker while it runs, for PoolOptions::memory_budget
  /// (unused without one). 0 (default): the largest change in a worker's memory across one job of
  /// this name so far (JobStats::memory_delta_max_bytes), or nothing before one has been read. Give
  /// it for jobs whose memory peaks and falls back, which the change across a job does not show.
  std::uint64_t expected_memory_bytes = 0;
};

}  // namespace procpool
