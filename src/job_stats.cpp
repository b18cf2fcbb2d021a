#include "job_stats.hpp"

#include <algorithm>
#include <cmath>

namespace procpool::detail {

namespace {

constexpr const char* overflow_name = "(other)";

double percentile(std::vector<float> samples, double p) {
  if (samples.empty()) return 0;
  auto rank = static_cast<std::size_t>(std::ceil(p * static_cast<double>(samples.size()))) - 1;
  rank = std::min(rank, samples.size() - 1);
  std::nth_element(samples.begin(), samples.begin() + static_cast<std::ptrdiff_t>(rank),
                   samples.end());
  return samples[rank];
}

}  // namespace

JobStatsTable::Entry& JobStatsTable::entry(const std::string& name) {
  auto it = entries_.find(name);
  if (it == entries_.end()) {
    std::string key = entries_.size() < max_job_names ? name : overflow_name;
    it = entries_.try_emplace(std::move(key)).first;
  }
  return it->second;
}

std::optional<std::uint64_t> JobStatsTable::largest_memory_increase(const std::string& name) const {
  auto it = entries_.find(name);
  if (it == entries_.end() && entries_.size() >= max_job_names) it = entries_.find(overflow_name);
  if (it == entries_.end() || it->second.delta_jobs == 0 || it->second.delta_max <= 0) {
    return std::nullopt;
  }
  return static_cast<std::uint64_t>(it->second.delta_max);
}

void JobStatsTable::record(const std::string& name, bool succeeded,
                           std::chrono::nanoseconds latency) {
  Entry& e = entry(name);
  (succeeded ? e.completed : e.failed) += 1;
  auto ms = static_cast<float>(std::chrono::duration<double, std::milli>(latency).count());
  if (e.latencies_ms.size() < latency_window) {
    e.latencies_ms.push_back(ms);
  } else {
    e.latencies_ms[e.next_latency] = ms;
    e.next_latency = (e.next_latency + 1) % latency_window;
  }
}

void JobStatsTable::record_memory(const std::string& name, std::int64_t delta, std::uint64_t jobs) {
  Entry& e = entry(name);
  const std::int64_t per_job = delta / static_cast<std::int64_t>(jobs);
  e.delta_max = e.delta_jobs == 0 ? per_job : std::max(e.delta_max, per_job);
  e.delta_sum += static_cast<double>(delta);
  e.delta_jobs += jobs;
}

std::vector<JobStats> JobStatsTable::snapshot() const {
  std::vector<JobStats> out;
  out.reserve(entries_.size());
  for (const auto& [name, e] : entries_) {
    JobStats s;
    s.name = name;
    s.completed = e.completed;
    s.failed = e.failed;
    s.latency_p50_ms = percentile(e.latencies_ms, 0.50);
    s.latency_p99_ms = percentile(e.latencies_ms, 0.99);
    s.memory_delta_mean_bytes = e.delta_jobs ? e.delta_sum / static_cast<double>(e.delta_jobs) : 0;
    s.memory_delta_max_bytes = e.delta_max;
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace procpool::detail
