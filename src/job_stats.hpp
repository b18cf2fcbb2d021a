// Figures per job name: counts, latency percentiles over a bounded window, and memory attribution.
// Bounded in every dimension: at most max_job_names names (later ones share one "(other)" entry)
// and latency_window samples per name. Supervisor thread only.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "procpool/stats.hpp"

namespace procpool::detail {

class JobStatsTable {
 public:
  static constexpr std::size_t max_job_names = 256;
  static constexpr std::size_t latency_window = 1024;

  /// A job of this name reached an outcome after `latency`.
  void record(const std::string& name, bool succeeded, std::chrono::nanoseconds latency);
  /// The worker's memory changed by `delta` across `jobs` (>= 1) jobs of this name that ran one
  /// after another between two readings.
  void record_memory(const std::string& name, std::int64_t delta, std::uint64_t jobs);

  std::vector<JobStats> snapshot() const;
  /// The largest change in a worker's memory across one job of this name (positive), or nullopt
  /// before one has been read. Names past max_job_names share the "(other)" entry's.
  std::optional<std::uint64_t> largest_memory_increase(const std::string& name) const;

  std::size_t size() const noexcept { return entries_.size(); }

 private:
  struct Entry {
    std::uint64_t completed = 0, failed = 0;
    std::vector<float> latencies_ms;  // ring of the latest latency_window samples
    std::size_t next_latency = 0;
    double delta_sum = 0;
    std::uint64_t delta_jobs = 0;
    std::int64_t delta_max = 0;  // per job: a reading's change over the jobs it covers
  };
  Entry& entry(const std::string& name);

  std::map<std::string, Entry, std::less<>> entries_;
};

}  // namespace procpool::detail
