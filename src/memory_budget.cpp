#include "memory_budget.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "policy.hpp"

namespace procpool::detail {

void BudgetReservation::add(std::optional<std::uint64_t> memory, std::uint64_t peak) noexcept {
  if (!since_) since_ = memory.value_or(0);
  peaks_ += peak;
}

std::uint64_t BudgetReservation::charge(std::optional<std::uint64_t> memory) const noexcept {
  const std::uint64_t read = memory.value_or(0);
  return since_ ? std::max(read, *since_ + peaks_) : read;
}

MemoryBudgetGate::MemoryBudgetGate(const procpool::MemoryBudget& options,
                                   std::optional<std::uint64_t> host_limit, std::string& why_none) {
  if (options.bytes > 0) {
    bytes_ = options.bytes;
  } else if (options.host_limit_fraction > 0) {
    if (host_limit) {
      bytes_ = static_cast<std::uint64_t>(
          std::floor(options.host_limit_fraction * static_cast<double>(*host_limit)));
    } else {
      why_none = fmt::format(
          "PoolOptions::memory_budget asks for {} of the host's memory cgroup limit, but the host "
          "is in no memory cgroup with a limit: the pool runs with no memory budget (give "
          "memory_budget.bytes to have one)",
          options.host_limit_fraction);
    }
  }
}

std::uint64_t MemoryBudgetGate::expected_peak(std::uint64_t submitted, const std::string& name,
                                              const JobStatsTable& job_stats) {
  if (submitted > 0) return submitted;
  return job_stats.largest_memory_increase(name).value_or(0);
}

MemoryBudgetGate::Admission MemoryBudgetGate::admit(std::uint64_t peak, std::uint64_t in_use,
                                                    bool may_free, bool& held_before) {
  if (peak > bytes_) {
    ++over_budget_;
    return Admission::never_fits;
  }
  if (fits(peak, in_use) || !may_free) return Admission::run;
  if (!held_before) ++held_;
  held_before = true;
  return Admission::hold;
}

std::string MemoryBudgetGate::refusal(const std::string& name, std::uint64_t peak,
                                      bool submitted) const {
  return fmt::format(
      "job '{}' is expected to add {} to its worker ({}), more than the pool memory budget of {} "
      "allows: it could never run. Give SubmitOptions::expected_memory_bytes if it needs less, "
      "or raise PoolOptions::memory_budget",
      name, format_bytes(peak),
      submitted ? "SubmitOptions::expected_memory_bytes"
                : "the most a job of this name has added so far",
      format_bytes(bytes_));
}

void MemoryBudgetGate::fill(MemoryStats& stats, std::uint64_t in_use) const noexcept {
  stats.budget_bytes = bytes_;
  stats.budget_in_use_bytes = in_use;
  stats.jobs_held_for_memory = held_;
  stats.holding_job_for_memory = holding_;
  stats.jobs_over_budget = over_budget_;
}

}  // namespace procpool::detail
