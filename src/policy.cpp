#include "policy.hpp"

#include <fmt/format.h>

#include <cmath>

namespace procpool::detail {

std::string format_bytes(std::uint64_t bytes) {
  constexpr const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes);
  std::size_t unit = 0;
  while (value >= 1024 && unit + 1 < std::size(units)) {
    value /= 1024;
    ++unit;
  }
  return unit == 0 ? fmt::format("{} B", bytes) : fmt::format("{:.1f} {}", value, units[unit]);
}

std::uint64_t jittered_job_limit(const RecyclePolicy& policy, double unit_random) {
  if (policy.max_jobs == 0) return 0;
  auto extra = static_cast<std::uint64_t>(
      std::floor(unit_random * static_cast<double>(policy.max_jobs_jitter + 1)));
  return policy.max_jobs + std::min(extra, policy.max_jobs_jitter);
}

std::chrono::milliseconds jittered_lifetime(const RecyclePolicy& policy, double unit_random) {
  if (policy.max_lifetime.count() == 0) return std::chrono::milliseconds{0};
  auto extra = static_cast<std::chrono::milliseconds::rep>(
      std::floor(unit_random * static_cast<double>(policy.max_lifetime_jitter.count() + 1)));
  return policy.max_lifetime +
         std::chrono::milliseconds{std::min(extra, policy.max_lifetime_jitter.count())};
}

namespace {

Decision retire(RecycleReason reason, std::string detail) {
  return Decision{Verdict::retire, reason, std::move(detail), std::nullopt};
}

}  // namespace

Decision decide(const WorkerFacts& facts, const RecyclePolicy& policy,
                PolicyClock::time_point now) {
  if (facts.memory) {
    std::uint64_t memory = *facts.memory;
    if (policy.memory_hard_limit && memory > policy.memory_hard_limit) {
      return Decision{Verdict::kill_now, RecycleReason::memory_hard_limit,
                      fmt::format("memory {} is over the hard limit of {}", format_bytes(memory),
                                  format_bytes(policy.memory_hard_limit)),
                      std::nullopt};
    }
    if (policy.memory_soft_limit && memory > policy.memory_soft_limit && !facts.soft_limit_waived) {
      return retire(RecycleReason::memory_soft_limit,
                    fmt::format("memory {} is over the soft limit of {}", format_bytes(memory),
                                format_bytes(policy.memory_soft_limit)));
    }
    if (policy.memory_growth_limit && facts.baseline && memory > *facts.baseline &&
        memory - *facts.baseline > policy.memory_growth_limit) {
      return retire(
          RecycleReason::memory_growth,
          fmt::format("memory grew {} over its baseline of {} (limit {})",
                      format_bytes(memory - *facts.baseline), format_bytes(*facts.baseline),
                      format_bytes(policy.memory_growth_limit)));
    }
  }
  if (facts.job_limit && facts.jobs_done + facts.jobs_in_hand >= facts.job_limit) {
    if (facts.jobs_in_hand == 0) {
      return retire(RecycleReason::max_jobs,
                    fmt::format("it ran {} jobs (limit {})", facts.jobs_done, facts.job_limit));
    }
    return retire(RecycleReason::max_jobs,
                  fmt::format("it has its last jobs in hand: {} run, {} under way (limit {})",
                              facts.jobs_done, facts.jobs_in_hand, facts.job_limit));
  }
  Decision keep;
  auto consider = [&](PolicyClock::time_point t) {
    if (!keep.recheck_at || t < *keep.recheck_at) keep.recheck_at = t;
  };
  if (facts.lifetime_limit.count() > 0) {
    auto end_of_life = facts.ready_at + facts.lifetime_limit;
    if (now >= end_of_life) {
      return retire(
          RecycleReason::max_lifetime,
          fmt::format(
              "it lived {} ms (limit {} ms)",
              std::chrono::duration_cast<std::chrono::milliseconds>(now - facts.ready_at).count(),
              facts.lifetime_limit.count()));
    }
    consider(end_of_life);
  }
  if (policy.idle_timeout.count() > 0 && !facts.busy) {
    auto idle_end = facts.idle_since + policy.idle_timeout;
    if (now >= idle_end) {
      return retire(
          facts.scale_down_when_idle ? RecycleReason::scale_down : RecycleReason::idle_timeout,
          fmt::format(
              "it was idle for {} ms (limit {} ms)",
              std::chrono::duration_cast<std::chrono::milliseconds>(now - facts.idle_since).count(),
              policy.idle_timeout.count()));
    }
    consider(idle_end);
  }
  return keep;
}

}  // namespace procpool::detail
