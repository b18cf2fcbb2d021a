#include "worker_process.hpp"

namespace procpool::detail {

WorkerStats WorkerProcess::snapshot(Clock::time_point now) const {
  using std::chrono::duration_cast;
  using std::chrono::milliseconds;
  WorkerStats stats;
  stats.id = id;
  stats.pid = pid;
  stats.state = state();
  stats.jobs_done = jobs_done;
  stats.age = duration_cast<milliseconds>(now - spawned_at);
  stats.rss_bytes = memory.rss();
  stats.peak_rss_bytes = memory.peak_rss();
  stats.memory_bytes = memory.current().value_or(0);
  stats.baseline_bytes = memory.baseline();
  stats.growth_bytes_per_job = memory.growth_per_job(jobs_done).value_or(0);
  stats.growth_bytes_per_minute = memory.growth_per_minute(now).value_or(0);
  stats.predecessor_reason = predecessor_reason;
  stats.leaving_reason = life.leaving();
  if (job) {
    stats.current_job = job->name;
    stats.current_job_running_for = duration_cast<milliseconds>(now - job_started_at);
  } else if (life.ready()) {
    stats.idle_for = duration_cast<milliseconds>(now - idle_since);
  }
  return stats;
}

}  // namespace procpool::detail
