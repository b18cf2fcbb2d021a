#include "worker_memory.hpp"

#include <algorithm>

namespace procpool::detail {

WorkerMemory::WorkerMemory(int pid, MemoryMetric metric)
    : reader_(pid), pid_(pid), metric_(metric) {}

bool WorkerMemory::read(Clock::time_point now, bool holds_job) {
  auto rss = reader_.read();
  if (!rss) return false;
  read_at_ = now;
  if (!holds_job) budget_.clear();  // a reading after its jobs: what they left is in it
  rss_ = *rss;
  peak_rss_ = std::max(peak_rss_, *rss);
  switch (metric_) {
    case MemoryMetric::rss:
      memory_ = *rss;
      break;
    case MemoryMetric::pss:
    case MemoryMetric::uss:
      if (auto usage = platform::read_pss_uss(pid_)) {
        memory_ = metric_ == MemoryMetric::pss ? usage->pss : usage->uss;
      }
      break;
  }
  return true;
}

void WorkerMemory::take_baseline_if_due(std::uint64_t jobs_done, std::uint64_t after_jobs,
                                        Clock::time_point now) {
  if (baseline_ || !memory_ || jobs_done < after_jobs) return;
  baseline_ = memory_;
  baseline_at_ = now;
  baseline_jobs_ = jobs_done;
}

std::optional<double> WorkerMemory::growth_per_job(std::uint64_t jobs_done) const {
  if (!baseline_ || !memory_) return std::nullopt;
  // Over the jobs that reading saw: not those still awaiting one.
  const std::uint64_t jobs_read = jobs_done - unread_jobs_;
  if (jobs_read <= baseline_jobs_) return std::nullopt;
  const double growth = static_cast<double>(*memory_) - static_cast<double>(*baseline_);
  return growth / static_cast<double>(jobs_read - baseline_jobs_);
}

std::optional<double> WorkerMemory::growth_per_minute(Clock::time_point now) const {
  if (!baseline_ || !memory_) return std::nullopt;
  const double minutes = std::chrono::duration<double, std::ratio<60>>(now - baseline_at_).count();
  if (minutes <= 0) return std::nullopt;
  return (static_cast<double>(*memory_) - static_cast<double>(*baseline_)) / minutes;
}

void WorkerMemory::job_starts() noexcept {
  if (!unread_jobs_) before_job_ = memory_;
}

void WorkerMemory::job_follows_without_reading() noexcept {
  unread_jobs_ = 0;
  before_job_.reset();
}

void WorkerMemory::job_ended(const std::string& name) {
  if (!before_job_) return;
  unread_job_name_ = name;
  ++unread_jobs_;
}

std::optional<MemoryAttribution> WorkerMemory::attribute() {
  std::optional<MemoryAttribution> attribution;
  if (unread_jobs_ && memory_ && before_job_) {
    attribution = MemoryAttribution{
        unread_job_name_,
        static_cast<std::int64_t>(*memory_) - static_cast<std::int64_t>(*before_job_),
        unread_jobs_};
  }
  unread_jobs_ = 0;
  before_job_ = memory_;
  return attribution;
}

bool WorkerMemory::reading_due(Clock::time_point now, std::chrono::microseconds min_interval,
                               bool leaving) const noexcept {
  // Before the baseline: it is to be a reading after its warm-up jobs, not one from before them.
  // After jobs sent ahead (no reading to count from): the next job must count from a reading
  // after them, or their change would be given to it.
  return !baseline_ || leaving || !before_job_ || now - read_at_ >= min_interval;
}

}  // namespace procpool::detail
