// What is known of one worker's memory: its readings (RSS, and the figure the recycle policy
// compares, RecyclePolicy::memory_metric), its baseline after its warm-up jobs, the jobs whose
// change still awaits a reading (job stats), the soft-limit waiver, and what it holds against the
// pool memory budget. It reads /proc and keeps figures; it decides nothing and records nothing
// elsewhere (attribute() returns the change for the caller to record). Supervisor thread only
// (and a Pool::call thread that holds the state lock).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "memory_budget.hpp"
#include "platform/platform.hpp"
#include "procpool/recycle_policy.hpp"

namespace procpool::detail {

/// The change of memory of jobs that ended without a reading of their own (all one name).
struct MemoryAttribution {
  std::string job_name;
  std::int64_t change = 0;
  std::uint64_t jobs = 0;
};

class WorkerMemory {
 public:
  using Clock = std::chrono::steady_clock;

  WorkerMemory() = default;
  /// Memory of process `pid`, read in `metric`. Throws std::system_error if /proc cannot be
  /// opened for it.
  WorkerMemory(int pid, MemoryMetric metric);

  /// Reads it now; false if it is exiting (its exit follows). `holds_job`: it has a job in hand
  /// (else the reading says all the budget needs to know).
  bool read(Clock::time_point now, bool holds_job);
  /// The latest reading in the policy's metric, if any.
  const std::optional<std::uint64_t>& current() const noexcept { return memory_; }
  std::uint64_t rss() const noexcept { return rss_; }
  std::uint64_t peak_rss() const noexcept { return peak_rss_; }

  // Baseline: the reading after its warm-up jobs (RecyclePolicy::baseline_after_jobs).
  const std::optional<std::uint64_t>& baseline() const noexcept { return baseline_; }
  /// Takes the latest reading as its baseline if it has none and has done `after_jobs` jobs.
  void take_baseline_if_due(std::uint64_t jobs_done, std::uint64_t after_jobs,
                            Clock::time_point now);
  /// Growth over the baseline per job, over the jobs the latest reading saw; nullopt without one.
  std::optional<double> growth_per_job(std::uint64_t jobs_done) const;
  /// Growth over the baseline per minute since it was taken.
  std::optional<double> growth_per_minute(Clock::time_point now) const;

  // Attributing each job's change to its name (job stats).
  /// A job of `name` starts on an idle worker: true if the jobs awaiting a reading are of another
  /// name, which must then get theirs first (read(), then attribute()).
  bool unread_jobs_of_other_name(const std::string& name) const noexcept {
    return unread_jobs_ && unread_job_name_ != name;
  }
  /// A job starts on an idle worker: its change counts from the latest reading, unless jobs of its
  /// name await one (it joins them).
  void job_starts() noexcept;
  /// A job starts right after another, with no reading between: neither change can be told apart.
  void job_follows_without_reading() noexcept;
  /// A job of `name` ended; its change awaits the next reading.
  void job_ended(const std::string& name);
  /// The change of the jobs awaiting a reading, up to the latest one (nullopt if there are none or
  /// it cannot be told); the next jobs count from it.
  std::optional<MemoryAttribution> attribute();
  /// Whether a job that just ended is to be followed by a reading now, rather than by a later
  /// one (RecyclePolicy::memory_read_min_interval). `leaving`: its last job (every one is read).
  bool reading_due(Clock::time_point now, std::chrono::microseconds min_interval,
                   bool leaving) const noexcept;

  /// It was above the soft limit right after start-up: kept, not recycled after every job.
  void waive_soft_limit() noexcept { soft_limit_waived_ = true; }
  bool soft_limit_waived() const noexcept { return soft_limit_waived_; }

  /// What it holds against the pool memory budget (PoolOptions::memory_budget).
  BudgetReservation& budget() noexcept { return budget_; }
  std::uint64_t budget_charge() const noexcept { return budget_.charge(memory_); }

 private:
  platform::RssReader reader_;
  int pid_ = 0;
  MemoryMetric metric_ = MemoryMetric::rss;
  std::uint64_t rss_ = 0, peak_rss_ = 0;
  std::optional<std::uint64_t> memory_;
  Clock::time_point read_at_{};
  /// The reading the change of the jobs not yet attributed counts from; nullopt while a job's
  /// change cannot be attributed (it followed a job sent ahead without a reading).
  std::optional<std::uint64_t> before_job_;
  std::uint64_t unread_jobs_ = 0;
  std::string unread_job_name_;
  std::optional<std::uint64_t> baseline_;
  Clock::time_point baseline_at_{};
  std::uint64_t baseline_jobs_ = 0;
  bool soft_limit_waived_ = false;
  BudgetReservation budget_;
};

}  // namespace procpool::detail
