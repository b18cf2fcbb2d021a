// Recycle decisions as pure functions: (what we know of a worker, the policy, now) -> keep, retire
// after the current job, or kill now, with the reason. No processes, no clocks, no I/O: the
// supervisor gathers the facts and carries out the verdict.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "procpool/options.hpp"
#include "procpool/stats.hpp"

namespace procpool::detail {

using PolicyClock = std::chrono::steady_clock;

struct WorkerFacts {
  PolicyClock::time_point ready_at;
  std::uint64_t jobs_done = 0;
  /// Jobs it has been given and not finished: the one it runs and those prefetched behind it.
  /// max_jobs counts them, so a worker retires as its last job starts, and its replacement starts
  /// alongside that job rather than after it.
  std::uint64_t jobs_in_hand = 0;
  bool busy = false;
  /// When it last became idle (valid when !busy).
  PolicyClock::time_point idle_since;
  /// The latest memory reading in the policy's metric.
  std::optional<std::uint64_t> memory;
  /// Memory after RecyclePolicy::baseline_after_jobs jobs.
  std::optional<std::uint64_t> baseline;
  /// This worker's own limits, jitter applied (0 = none).
  std::uint64_t job_limit = 0;
  std::chrono::milliseconds lifetime_limit{0};
  /// Its memory already exceeded the soft limit right after start-up: the soft limit does not
  /// apply to it (a fresh worker would be no better).
  bool soft_limit_waived = false;
  /// An idle timeout stops this worker instead of recycling it (the pool is above min_workers).
  bool scale_down_when_idle = false;
};

enum class Verdict {
  keep,
  /// Take no new job; leave after the current one (or now, if idle). A replacement is started,
  /// except for scale_down.
  retire,
  /// SIGKILL now.
  kill_now,
};

struct Decision {
  Verdict verdict = Verdict::keep;
  RecycleReason reason = RecycleReason::max_jobs;
  /// Human-readable specifics ("RSS 612 MiB over the soft limit of 512 MiB").
  std::string detail;
  /// For keep: the next moment a time-based rule could fire (lifetime, idle), if any.
  std::optional<PolicyClock::time_point> recheck_at;
};

/// Decides what to do with a worker now. Rules, strongest first: hard memory limit (kill), then
/// soft limit, growth over baseline, job count, lifetime, idle timeout (retire).
Decision decide(const WorkerFacts& facts, const RecyclePolicy& policy, PolicyClock::time_point now);

/// A worker's job limit and lifetime with jitter, from a uniform random number in [0, 1).
std::uint64_t jittered_job_limit(const RecyclePolicy& policy, double unit_random);
std::chrono::milliseconds jittered_lifetime(const RecyclePolicy& policy, double unit_random);

/// "1.5 GiB"-style size for messages.
std::string format_bytes(std::uint64_t bytes);

}  // namespace procpool::detail
