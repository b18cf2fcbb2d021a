// RecyclePolicy: when a worker is replaced by a fresh one (jobs, lifetime, idle time, memory).
// Part of PoolOptions (options.hpp); the policies one by one are in docs/policies.md.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

namespace procpool {

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
/// ErrorKind::memory_limit (or is retried, if idempotent). See docs/policies.md.
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
  /// Memory is read after each job, but not again within this interval of the last reading:
  /// back-to-back jobs of a few microseconds share one reading and its change, which the limits
  /// see at that reading (docs/policies.md). 0 = after every job. Allowed:
  /// 0..memory_sample_interval.
  std::chrono::microseconds memory_read_min_interval{100};

  /// RLIMIT_AS for each worker in bytes (its allocations fail beyond it). 0 = inherit the host's.
  std::uint64_t address_space_limit = 0;

  /// Workers that may be retiring at once for max_lifetime or idle_timeout (which strike workers
  /// started together at the same moment); more wait their turn, serving meanwhile. Job-count and
  /// memory retirements are never postponed. Allowed: >= 1.
  std::size_t max_concurrent_recycles = 1;
};

}  // namespace procpool
