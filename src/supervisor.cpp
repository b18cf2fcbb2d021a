#include "supervisor.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <stdexcept>

namespace procpool::detail {

using std::chrono::milliseconds;

namespace {

/// The host's memory cgroup, if it is in one the pool can read.
std::optional<platform::MemoryCgroup> host_memory_cgroup() {
  std::string why_not;
  return platform::own_memory_cgroup(why_not);
}

}  // namespace

Supervisor::Supervisor(PoolOptions options)
    : options_(std::move(options)),
      reporter_(options_.log, options_.on_event),
      host_pid_(platform::current_pid()),
      fork_generation_(platform::watch_forks()),
      intake_(options_.queue_capacity, options_.when_queue_full),
      host_cgroup_(host_memory_cgroup()),
      oom_attribution_(host_cgroup_),
      spin_(options_.spin.enabled ? std::chrono::nanoseconds(options_.spin.budget)
                                  : std::chrono::nanoseconds::zero()),
      online_cpus_(platform::online_cpus()),
      usable_cpus_(platform::usable_cpus()),
      spawner_(options_, host_pid_, poller_, reporter_) {
  scaled_target_ = options_.min_workers.value_or(options_.workers);
  if (const MemoryCgroupOptions& cgroups = options_.worker_cgroups; cgroups.enabled) {
    worker_cgroups_.emplace(
        cgroups, cgroups.max_bytes ? cgroups.max_bytes : options_.recycle.memory_hard_limit,
        host_cgroup_);
    if (!worker_cgroups_->active()) {
      reporter_.log(
          LogLevel::warning,
          fmt::format("per-worker memory cgroups are off: {}; the sampled limits alone keep "
                      "workers' memory in bounds (PoolStats::memory.enforcement: sampled)",
                      worker_cgroups_->why_not()));
    } else if (std::size_t swept = worker_cgroups_->swept()) {
      reporter_.log(
          LogLevel::info,
          fmt::format("removing {} memory cgroup(s) left by pools whose host died", swept));
    }
  }
  std::string no_budget;
  std::optional<std::uint64_t> host_limit;
  if (host_cgroup_) {
    if (auto limit = platform::effective_memory_limit(*host_cgroup_)) host_limit = limit->bytes;
  }
  memory_budget_ = MemoryBudgetGate(options_.memory_budget, host_limit, no_budget);
  if (!no_budget.empty()) reporter_.log(LogLevel::warning, no_budget);
  // Edge-triggered: the eventfds the supervisor sleeps on are never drained (a read per wake-up).
  poller_.add(intake_.wake_descriptor(), wake_key, true);
  thread_ = std::thread([this] { run(); });
}

Supervisor::~Supervisor() {
  try {
    shutdown(options_.destructor_drain);
  } catch (...) {
    // Destructors never throw; shutdown only throws if joining the thread fails.
  }
}

// ---- Any thread ----------------------------------------------------------------------------

bool Supervisor::forked_copy(bool exact) const noexcept {
  return platform::fork_generation() != fork_generation_ ||
         (exact && platform::current_pid() != host_pid_);
}

std::string Supervisor::forked_copy_message() const {
  return fmt::format(
      "this process (pid {}) is a fork of the pool's host (pid {}): a Pool works only in the "
      "process that made it; make the pool after fork()",
      platform::current_pid(), host_pid_);
}

std::optional<JobResult> Supervisor::check_request(std::string_view name, std::size_t payload_bytes,
                                                   const SubmitOptions& options) const {
  // Every job passes here before any lock: in a forked copy, where no supervisor thread would
  // ever run it and a lock may be held for good, it is refused at once.
  if (forked_copy(false)) return job_failure(ErrorKind::invalid_request, forked_copy_message());
  if (name.empty()) return job_failure(ErrorKind::invalid_request, "the job name is empty");
  if (name.size() > max_job_name_bytes) {
    return job_failure(
        ErrorKind::invalid_request,
        fmt::format("the job name is {} bytes; the limit is {}", name.size(), max_job_name_bytes));
  }
  if (options.max_attempts == 0 || options.max_attempts > 100) {
    return job_failure(
        ErrorKind::invalid_request,
        fmt::format("SubmitOptions::max_attempts is {}; allowed: 1..100", options.max_attempts));
  }
  if (options.max_attempts > 1 && !options.idempotent) {
    return job_failure(
        ErrorKind::invalid_request,
        "SubmitOptions::max_attempts > 1 requires idempotent = true: only jobs that are "
        "safe to run twice are retried");
  }
  if (options.retry_backoff.count() < 0) {
    return job_failure(ErrorKind::invalid_request,
                       "SubmitOptions::retry_backoff must be 0 (retry at once) or positive");
  }
  if (options.timeout.count() < 0) {
    return job_failure(ErrorKind::invalid_request,
                       "SubmitOptions::timeout must be 0 (pool default) or positive");
  }
  if (options.deadline && *options.deadline <= Clock::now()) {
    return job_failure(ErrorKind::deadline_exceeded,
                       "SubmitOptions::deadline had passed when the job was submitted");
  }
  if (payload_bytes > options_.max_payload_bytes) {
    return job_failure(
        ErrorKind::payload_too_large,
        fmt::format("the payload is {} bytes, over PoolOptions::max_payload_bytes ({})",
                    payload_bytes, options_.max_payload_bytes));
  }
  return std::nullopt;
}

Job Supervisor::make_job(JobId id, std::string_view name, Bytes payload,
                         const SubmitOptions& options, OutcomeSink sink) const {
  Job job;
  job.id = id;
  job.name = name;
  job.payload = std::move(payload);
  job.options = options;
  job.timeout = options.timeout.count() > 0 ? options.timeout : options_.job_timeout;
  job.sink = std::move(sink);
  return job;
}

JobId Supervisor::take_ids(std::size_t n) {
  if (options_.spin.enabled) submit_cpu_.store(platform::current_cpu(), std::memory_order_relaxed);
  reporter_.count_submitted(n);
  return intake_.take_ids(n);
}

void Supervisor::deliver_outcomes(std::vector<Outcome>& outcomes) noexcept {
  for (auto& outcome : outcomes)
    deliver_outcome(std::move(outcome.sink), std::move(outcome.result));
}

JobId Supervisor::submit_one(Job job, std::optional<JobResult> refusal) {
  // As submit_batch for one job, without its vectors: two allocations fewer per job.
  std::vector<Outcome> rejected;
  if (refusal) {
    reporter_.count(*refusal);
    rejected.push_back(Outcome{std::move(job.sink), std::move(*refusal)});
  } else {
    enqueue(std::span<Job>(&job, 1), rejected);
  }
  deliver_outcomes(rejected);
  return job.id;
}

JobId Supervisor::submit(std::string_view name, Bytes payload, const SubmitOptions& options,
                         OutcomeSink sink) {
  std::optional<JobResult> refusal = check_request(name, payload.size(), options);
  return submit_one(make_job(take_ids(1), name, std::move(payload), options, std::move(sink)),
                    std::move(refusal));
}

JobId Supervisor::submit_batch(std::string_view name, std::vector<Bytes> payloads,
                               const SubmitOptions& options, std::vector<OutcomeSink> sinks) {
  const std::size_t n = payloads.size();
  JobId first = take_ids(n);
  std::vector<Outcome> rejected;
  // Built and queued a chunk at a time: a batch of 100,000 would otherwise need a 13 MB vector
  // of jobs for a moment, which the allocator may keep in the heap for good.
  constexpr std::size_t chunk = 1024;
  std::vector<Job> jobs;
  jobs.reserve(std::min(n, chunk));
  for (std::size_t start = 0; start < n; start += chunk) {
    jobs.clear();
    for (std::size_t i = start; i < std::min(n, start + chunk); ++i) {
      if (auto error = check_request(name, payloads[i].size(), options)) {
        reporter_.count(*error);
        rejected.push_back(Outcome{std::move(sinks[i]), std::move(*error)});
        continue;
      }
      jobs.push_back(
          make_job(first + i, name, std::move(payloads[i]), options, std::move(sinks[i])));
    }
    enqueue(jobs, rejected);
  }
  deliver_outcomes(rejected);
  return first;
}

void Supervisor::enqueue(std::span<Job> jobs, std::vector<Outcome>& rejected) {
  const bool may_wait = std::this_thread::get_id() != supervisor_thread_id_.load();
  JobIntake::Pushed pushed = intake_.push(jobs, may_wait);
  if (!pushed.refusal) return;
  JobResult refusal = job_failure(pushed.refusal->kind, std::move(pushed.refusal->message));
  for (std::size_t i = pushed.queued; i < jobs.size(); ++i) {
    reporter_.count(refusal);
    rejected.push_back(Outcome{std::move(jobs[i].sink), refusal});
  }
}

LentBuffer Supervisor::lend(std::size_t bytes) {
  // The lender's lock may be held for good in a forked copy, where no job could use the buffer.
  if (forked_copy(true)) throw std::logic_error("Pool::lend: " + forked_copy_message());
  return lender_->lend(bytes);
}

Job Supervisor::make_in_place_job(std::string_view name, LentBuffer input, LentBuffer output,
                                  const SubmitOptions& options, OutcomeSink sink,
                                  std::optional<JobResult>& refusal) {
  refusal = check_request(name, input.size(), options);
  if (!refusal && (!input || !output)) {
    refusal = job_failure(ErrorKind::invalid_request,
                          "an in-place job needs an input and an output buffer from Pool::lend");
  } else if (!refusal && LentAccess::same_memory(input, output)) {
    refusal = job_failure(ErrorKind::invalid_request,
                          "an in-place job needs two different buffers: the worker gets the input "
                          "read-only, so that a retry reads it unchanged");
  } else if (!refusal && output.size() > options_.max_result_bytes) {
    refusal = job_failure(
        ErrorKind::payload_too_large,
        fmt::format("the output buffer is {} bytes, over PoolOptions::max_result_bytes ({})",
                    output.size(), options_.max_result_bytes));
  }
  Job job = make_job(take_ids(1), name, Bytes(), options, std::move(sink));
  job.in_place =
      std::make_unique<InPlaceBuffers>(InPlaceBuffers{std::move(input), std::move(output)});
  return job;
}

JobId Supervisor::submit_in_place(std::string_view name, LentBuffer input, LentBuffer output,
                                  const SubmitOptions& options, OutcomeSink sink) {
  std::optional<JobResult> refusal;
  Job job = make_in_place_job(name, std::move(input), std::move(output), options, std::move(sink),
                              refusal);
  return submit_one(std::move(job), std::move(refusal));
}

bool Supervisor::cancel(JobId id, CancelMode mode) {
  // A forked copy queued nothing (every job is refused); the host's jobs are the host's.
  if (forked_copy(true)) return false;
  // Queued: the intake's lock alone.
  if (std::optional<Job> job = intake_.remove(id)) {
    complete_cancelled(std::move(*job));
    return true;
  }
  std::optional<Job> taken;
  bool held = false;
  {
    std::lock_guard lock(state_mutex_);
    // Lines and events stay the supervisor thread's, as they are for a Pool::call thread.
    Reporter::Deferral deferral(reporter_);
    // Between the two looks it may have been given to a worker, or returned to the queue.
    taken = intake_.remove(id);
    if (!taken) held = cancel_held(id, mode, taken);
  }
  // To act on the stop, the jobs taken back, or the lines kept.
  if (held || taken) intake_.wake();
  if (!taken) return held;
  complete_cancelled(std::move(*taken));
  return true;
}

void Supervisor::complete_cancelled(Job job) {
  JobResult result = job_failure(
      ErrorKind::cancelled,
      job.attempts == 0 ? "cancelled before it started" : "cancelled while it waited to be retried",
      job.attempts);
  reporter_.count(result);
  deliver_outcome(std::move(job.sink), std::move(result));
}

bool Supervisor::cancel_held(JobId id, CancelMode mode, std::optional<Job>& taken) {
  auto held_by = [id](WorkerProcess& worker) -> Job* {
    if (worker.job && worker.job->id == id) return worker.job.get();
    for (auto& job : worker.prefetched) {
      if (job->id == id) return job.get();
    }
    return nullptr;
  };
  const Clock::time_point now = Clock::now();
  for (auto& [worker_id, owned] : workers_) {
    WorkerProcess& worker = *owned;
    Job* job = held_by(worker);
    if (!job) continue;
    // Not read by the worker yet: back to the queue, with the jobs behind it, and out of there.
    // Sent ahead behind a job the worker has read, or given to it (or ahead) before it read that.
    if (job != worker.job.get()) take_back_unstarted(worker);
    if (held_by(worker)) take_back_unread(worker, now);
    if ((taken = intake_.remove(id))) return true;
    job = held_by(worker);
    if (!job) return false;  // failed on its way back (the pool is degraded): it has its outcome
    // Started: only a stop can end it now. One asked for before still holds.
    if (mode == CancelMode::if_queued) return job->cancel.has_value();
    const Clock::time_point kill_at = mode == CancelMode::kill ? now : now + options_.kill_grace;
    if (!job->cancel || kill_at < job->cancel_kill_at) job->cancel_kill_at = kill_at;
    if (job->cancel != CancelMode::kill) job->cancel = mode;
    if (mode == CancelMode::interrupt) worker.link.ask_to_stop(*job);
    if (worker.life.stop_sent()) {
      // Already on its way out: only a kill can make it sooner.
      if (mode == CancelMode::kill && !worker.life.kill_sent()) worker.kill();
    } else if (job == worker.job.get()) {
      // A job the worker reached after its current one gets its timer when the supervisor
      // thread reads that far (begin_job).
      worker.timers.job_deadline = job->must_stop_by(worker.job_started_at);
    }
    // A Pool::call thread waiting on this worker looks at its timers again.
    if (worker.direct_call) platform::futex_wake_all(worker.link.responses().interrupt_wait());
    return true;
  }
  return false;
}

PoolStats Supervisor::stats() const {
  PoolStats stats;
  stats.min_workers = options_.min_workers.value_or(options_.workers);
  stats.max_workers = options_.workers;
  if (forked_copy(true)) {
    // What the copy has: no worker, no job, and it takes none. Not the host's figures, which it
    // cannot read without locks that may be held for good, and which a prefork server's children
    // would each report again.
    stats.health = PoolHealth::stopped;
    return stats;
  }
  auto now = Clock::now();
  std::lock_guard state_lock(state_mutex_);
  const JobIntake::State intake = intake_.state();
  stats.queued = intake.queued + intake.held;
  stats.health = intake.stopping ? PoolHealth::stopped
                                 : (intake.degraded ? PoolHealth::degraded : PoolHealth::healthy);
  for (const auto& [id, worker] : workers_) {
    stats.in_flight += worker->jobs_in_hand();
    stats.workers.push_back(worker->snapshot(now));
  }
  // Asked of the fork server, which has not answered: no pid yet.
  spawner_.snapshot(now, stats.workers);
  reporter_.fill(stats);
  stats.workers_started = workers_started_;
  stats.workers_exited = workers_exited_;
  stats.start_failures = start_failures_;
  stats.recycles_by_reason = recycles_;
  stats.jobs = job_stats_.snapshot();
  stats.memory.worker_oom_score_adj = options_.worker_oom_score_adj;
  if (worker_cgroups_) {
    stats.memory.enforcement = worker_cgroups_->enforcement();
    stats.memory.worker_cgroups = worker_cgroups_->directory();
    if (worker_cgroups_->active()) stats.memory.worker_cap_bytes = worker_cgroups_->cap_bytes();
  }
  if (memory_budget_.enabled()) {
    bool may_free = false;
    memory_budget_.fill(stats.memory, memory_in_use(may_free));
  }
  stats.tracked_jobs = stats.queued + stats.in_flight + outcomes_.size();
  return stats;
}

void Supervisor::shutdown(milliseconds drain) {
  // A forked copy has no supervisor thread to stop or join, and must not stop the host's pool.
  if (forked_copy(true)) return;
  std::lock_guard guard(shutdown_mutex_);
  if (!thread_.joinable()) return;
  if (std::this_thread::get_id() == supervisor_thread_id_.load()) {
    reporter_.log(LogLevel::error, "Pool::shutdown called from a completion callback; ignored");
    return;
  }
  intake_.stop(drain);
  intake_.wake();
  thread_.join();
}

void Supervisor::deliver_outcome(OutcomeSink sink, JobResult result) noexcept {
  if (auto* promise = std::get_if<OutcomePromise>(&sink)) {
    promise->set(std::move(result));
    return;
  }
  try {
    if (auto* batch = std::get_if<BatchSink>(&sink)) {
      if (batch->callback && *batch->callback) (*batch->callback)(batch->index, std::move(result));
      return;
    }
    auto& callback = std::get<Completion>(sink);
    if (callback) callback(std::move(result));
  } catch (const std::exception& e) {
    reporter_.log(LogLevel::error, fmt::format("a completion callback threw: {}", e.what()));
  } catch (...) {
    reporter_.log(LogLevel::error, "a completion callback threw a non-std::exception");
  }
}

PoolEvent Supervisor::worker_event(EventType type, const WorkerProcess& worker,
                                   std::string message) {
  PoolEvent event;
  event.type = type;
  event.worker_id = worker.id;
  event.pid = worker.pid;
  event.message = std::move(message);
  return event;
}

void Supervisor::fail_job(const WorkerProcess& worker, std::unique_ptr<Job> job, JobError error,
                          LogLevel level) {
  try {
    PoolEvent event = worker_event(
        EventType::job_failed, worker,
        fmt::format("job '{}' failed ({}): {}", job->name, to_string(error.kind), error.message));
    event.job_name = job->name;
    event.error = error.kind;
    reporter_.emit(std::move(event), level);
  } catch (const std::bad_alloc&) {
    // No memory for the event: the job still gets its outcome.
  }
  queue_outcome(*job, JobResult::failure(std::move(error)));
}

void Supervisor::queue_outcome(Job& job, JobResult result) {
  reporter_.count(result);
  outcomes_.push_back(Outcome{std::move(job.sink), std::move(result)});
}

void Supervisor::reserve_outcomes(std::size_t jobs) {
  outcomes_.reserve(outcomes_.size() + jobs);
}

}  // namespace procpool::detail
