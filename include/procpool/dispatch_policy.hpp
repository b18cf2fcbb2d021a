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
/// back instead of each waiting for a round trip through the supervisor. Only while the worker's
/// recent jobs were short, and only as many as it should finish within `max_work_ahead`. A job
/// sent ahead can be cancelled until its worker reads it; if it waits too long, or its worker
/// stops, it goes back to the queue. See docs/architecture.md, "Prefetching: short jobs back to
/// back".
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

/// Whether the supervisor and the workers poll briefly for the next event before they sleep:
/// otherwise idle CPU time traded for latency, where waking a thread on another core costs tens
/// of microseconds. Adaptive: it polls only while a CPU is likely free, and backs off when its
/// polls miss. See docs/architecture.md, "Polling before sleeping (SpinPolicy)".
struct SpinPolicy {
  /// false: sleep at once, always. Default true.
  bool enabled = true;
  /// Longest one poll lasts before its thread sleeps. Allowed: 1..1000 µs.
  std::chrono::microseconds budget{200};
};

}  // namespace procpool
