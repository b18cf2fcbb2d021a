// The supervisor: one event-loop thread per pool that owns the workers, dispatches jobs, reads
// results, watches deaths and timers, and gives every job exactly one outcome.
//
// Threads: submitters push onto the queue under queue_mutex_; the supervisor thread does all
// worker I/O and holds state_mutex_ while it changes worker state, so stats() sees a consistent
// picture. Lock order: state_mutex_, then queue_mutex_. Outcomes (promises, callbacks) are
// delivered with no lock held. No lock here is ever shared with a worker process.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "channel/ring.hpp"
#include "channel/segment.hpp"
#include "platform/platform.hpp"
#include "procpool/options.hpp"
#include "procpool/pool.hpp"
#include "procpool/stats.hpp"

namespace procpool::detail {

using Clock = std::chrono::steady_clock;

/// Where a job's outcome goes: a promise (future-returning submit) or a callback.
using OutcomeSink = std::variant<std::promise<JobResult>, Completion>;

/// Everything the supervisor keeps for one job. Owned by exactly one place at a time: the queue, a
/// worker's slot, or the list of outcomes about to be delivered; so when a job ends, nothing of it
/// remains anywhere.
struct Job {
  JobId id = 0;
  std::string name;
  Bytes payload;
  SubmitOptions options;
  std::chrono::milliseconds timeout{0};
  OutcomeSink sink;
  unsigned attempts = 0;
};

/// Why the supervisor is stopping a worker; decides the outcome of the job it was running.
enum class StopReason { none, start_timeout, job_timeout, protocol_violation, shutdown };

struct WorkerProcess;

class Supervisor {
 public:
  explicit Supervisor(PoolOptions options);
  ~Supervisor();

  JobId submit(std::string_view name, Bytes payload, const SubmitOptions& options,
               OutcomeSink sink);
  bool cancel(JobId id);
  PoolStats stats() const;
  void shutdown(std::chrono::milliseconds drain);

 private:
  struct Outcome {
    OutcomeSink sink;
    JobResult result;
  };

  // Supervisor thread.
  void run() noexcept;
  void loop();
  std::optional<Clock::duration> step(Clock::time_point now);
  void on_ready_key(std::uint64_t key, Clock::time_point now);
  void spawn_workers(Clock::time_point now);
  void spawn_one(Clock::time_point now);
  void dispatch(Clock::time_point now);
  void send_request(WorkerProcess& worker);
  void read_responses(WorkerProcess& worker, Clock::time_point now);
  void handle_record(WorkerProcess& worker, const RecordView& record, Clock::time_point now);
  void finish_job(WorkerProcess& worker, Clock::time_point now);
  void read_output(WorkerProcess& worker, bool until_eof);
  void on_exit(WorkerProcess& worker, Clock::time_point now);
  void stop_worker(WorkerProcess& worker, StopReason reason, Clock::time_point now,
                   std::string detail = {});
  void violation(WorkerProcess& worker, const std::string& what, Clock::time_point now);
  void note_start_failure(Clock::time_point now, const std::string& why);
  void begin_final_stop(Clock::time_point now);
  std::optional<Clock::time_point> check_timers(Clock::time_point now);
  bool prepare_sleep();
  void end_sleep();
  void fail_queue(ErrorKind kind, const std::string& message);
  void deliver_outcomes();
  void emergency_stop() noexcept;

  // Any thread.
  void complete(std::unique_ptr<Job> job, JobResult result);
  void complete_now(OutcomeSink sink, JobResult result) noexcept;
  void count(const JobResult& result) noexcept;
  void log(LogLevel level, const std::string& line) const noexcept;
  void wake() noexcept;

  const PoolOptions options_;
  std::string executable_;
  std::vector<std::string> base_arguments_;
  const int host_pid_;

  // Submission side.
  mutable std::mutex queue_mutex_;
  std::condition_variable queue_space_;
  std::deque<std::unique_ptr<Job>> queue_;
  bool stopping_ = false;  // no new jobs
  bool degraded_ = false;  // workers keep failing to start
  bool supervisor_sleeping_ = false;
  std::optional<std::chrono::milliseconds> shutdown_drain_;

  std::atomic<JobId> next_job_id_{1};
  std::atomic<std::uint64_t> submitted_{0}, succeeded_{0}, retries_{0};
  std::array<std::atomic<std::uint64_t>, error_kind_count> failed_by_kind_{};

  // Supervisor state (changed by the supervisor thread under state_mutex_).
  mutable std::mutex state_mutex_;
  std::map<std::uint64_t, std::unique_ptr<WorkerProcess>> workers_;
  std::uint64_t next_worker_id_ = 1;
  std::vector<Outcome> outcomes_;  // delivered after state_mutex_ is released
  unsigned consecutive_start_failures_ = 0;
  Clock::time_point next_spawn_at_{};
  std::optional<Clock::time_point> drain_deadline_;
  bool final_stop_ = false;
  std::uint64_t workers_started_ = 0, workers_exited_ = 0, start_failures_ = 0;

  platform::Poller poller_;
  platform::UniqueFd wake_fd_;
  std::mutex shutdown_mutex_;
  std::thread thread_;
  std::atomic<std::thread::id> supervisor_thread_id_{};
};

}  // namespace procpool::detail
