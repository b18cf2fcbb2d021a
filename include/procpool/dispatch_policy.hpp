// How jobs go from submit to a worker: what a full queue does (QueueFullPolicy), jobs sent ahead
// to busy workers (PrefetchPolicy), and polling before sleeping (SpinPolicy). Parts of PoolOptions
// (options.hpp).
#pragma once

#include <chrono>
#include <cstddef>

namespace procpool {

/// What Pool::submit does when the queue already holds PoolOptions::queue_capacity jobs.
enum class QueueFullPolicy {
  /// Fail the new job at once with ErrorKind::queue_full.
  reject,
  /// Block the submitting thread until there is room (or the pool shuts down).
  block,
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

}  // namespace procpool
