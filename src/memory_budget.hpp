// The pool memory budget (PoolOptions::memory_budget, docs/memory.md): whether the job at the head
// of the queue may be given a worker now. The supervisor tells it what the workers hold; it
// decides, counts the jobs it held or refused, and words the refusal. Supervisor thread only
// (stats() reads it under the state lock).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "job_stats.hpp"
#include "procpool/options.hpp"
#include "procpool/stats.hpp"

namespace procpool::detail {

/// What one worker holds against the budget. Between being given jobs and the first memory reading
/// after them, a worker may still grow by their expected peaks: it holds its memory when it was
/// given the first of them plus those peaks, or its latest reading if that is more.
class BudgetReservation {
 public:
  /// A job expected to add up to `peak` was given to the worker, whose latest reading is `memory`.
  void add(std::optional<std::uint64_t> memory, std::uint64_t peak) noexcept;
  /// Its memory was read with no job in hand: the reading now says it all.
  void clear() noexcept { since_.reset(), peaks_ = 0; }
  /// What it holds, given its latest reading.
  std::uint64_t charge(std::optional<std::uint64_t> memory) const noexcept;

 private:
  std::optional<std::uint64_t> since_;  // its memory when given the first job still unread
  std::uint64_t peaks_ = 0;
};

class MemoryBudgetGate {
 public:
  /// No budget.
  MemoryBudgetGate() = default;
  /// The budget `options` ask for, given the limit of the host's memory cgroup (if any). An "auto"
  /// budget with no limit to take a fraction of is none, and `why_none` says so.
  MemoryBudgetGate(const procpool::MemoryBudget& options, std::optional<std::uint64_t> host_limit,
                   std::string& why_none);

  bool enabled() const noexcept { return bytes_ > 0; }
  std::uint64_t bytes() const noexcept { return bytes_; }

  /// The most a job may add to its worker: what it was submitted with, else the largest change
  /// its name has shown, else 0.
  static std::uint64_t expected_peak(std::uint64_t submitted, const std::string& name,
                                     const JobStatsTable& job_stats);

  enum class Admission { run, hold, never_fits };
  /// Whether a job expected to add `peak` may start while the workers hold `in_use`. `may_free`:
  /// a worker runs a job or is leaving, so waiting can change the figures; with none, a job that
  /// fits at all runs now (nothing waits forever). Counts the jobs refused, and those held (once
  /// each: `held_before` is the job's mark, set here).
  Admission admit(std::uint64_t peak, std::uint64_t in_use, bool may_free, bool& held_before);
  /// Whether a job expected to add `peak` fits beside `in_use` (for jobs sent ahead, which never
  /// wait: they are left in the queue).
  bool fits(std::uint64_t peak, std::uint64_t in_use) const noexcept {
    return in_use + peak <= bytes_;
  }
  /// Why a job of `name` expected to add `peak` can never run.
  std::string refusal(const std::string& name, std::uint64_t peak, bool submitted) const;
  /// Whether the job at the head of the queue waits for memory now (set by each dispatch pass).
  void set_holding(bool holding) noexcept { holding_ = holding; }
  bool holding() const noexcept { return holding_; }

  void fill(MemoryStats& stats, std::uint64_t in_use) const noexcept;

 private:
  std::uint64_t bytes_ = 0;
  std::uint64_t held_ = 0, over_budget_ = 0;
  bool holding_ = false;
};

}  // namespace procpool::detail
