#include "supervisor.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <stdexcept>

namespace procpool::detail {

using std::chrono::duration_cast;
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
  if (options.timeout.count() < 0) {
    return job_failure(ErrorKind::invalid_request,
                       "SubmitOptions::timeout must be 0 (pool default) or positive");
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

bool Supervisor::cancel(JobId id) {
  // A forked copy queued nothing (every job is refused); the host's jobs are the host's.
  if (forked_copy(true)) return false;
  std::optional<Job> job = intake_.remove(id);
  if (!job) return false;
  JobResult result =
      job_failure(ErrorKind::cancelled, "cancelled before it started", job->attempts);
  reporter_.count(result);
  deliver_outcome(std::move(job->sink), std::move(result));
  return true;
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
  stats.queued = intake.queued;
  stats.health = intake.stopping ? PoolHealth::stopped
                                 : (intake.degraded ? PoolHealth::degraded : PoolHealth::healthy);
  for (const auto& [id, w] : workers_) {
    stats.in_flight += w->jobs_in_hand();
    stats.workers.push_back(w->snapshot(now));
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

// ---- The loop ------------------------------------------------------------------------------

void Supervisor::run() noexcept {
  supervisor_thread_id_.store(std::this_thread::get_id());
  try {
    loop();
  } catch (const std::exception& e) {
    reporter_.log(LogLevel::error,
                  fmt::format("supervisor failed: {}; stopping the pool", e.what()));
    emergency_stop();
  } catch (...) {
    reporter_.log(LogLevel::error, "supervisor failed; stopping the pool");
    emergency_stop();
  }
  // After its workers. A server with starts unanswered (the loop failed) or retired gets its
  // grace period here, and every worker it reports late is killed.
  {
    std::lock_guard lock(state_mutex_);  // stats() reads the starts under way
    spawner_.forget_starts();
  }
  spawner_.stop();
  if (worker_cgroups_) {
    for (const std::string& left : worker_cgroups_->finish(std::chrono::seconds(2))) {
      reporter_.log(LogLevel::warning,
                    fmt::format("the memory cgroup {} is still in use and was left behind", left));
    }
  }
}

void Supervisor::loop() {
  std::vector<std::uint64_t> ready;
  for (;;) {
    std::optional<Clock::duration> timeout;
    std::vector<Outcome> outcomes;
    bool done = false, spinning = false;
    {
      std::lock_guard lock(state_mutex_);
      end_sleep();
      if (reporter_.has_deferred()) reporter_.emit_deferred();
      auto now = Clock::now();
      for (std::uint64_t key : ready)
        on_ready_key(key, now);
      ready.clear();
      timeout = step(now);
      update_spin_hint();
      done = final_stop_ && workers_.empty() && spawner_.starting() == 0;
      if (!done && (!timeout || *timeout > Clock::duration::zero())) {
        if (!prepare_sleep(now)) {
          timeout = Clock::duration::zero();
        } else if (prepare_spin(!outcomes_.empty())) {
          end_sleep();  // polled instead: no doorbell, no wake-up from submit
          spinning = true;
        } else {
          make_cgroup_ahead();
        }
      }
      sleep_until_.reset();
      if (timeout) sleep_until_ = now + *timeout;
      if (backlog_polling_ && (!sleep_until_ || *sleep_until_ > now + backlog_poll_interval)) {
        sleep_until_ = now + backlog_poll_interval;
      }
      outcomes.swap(outcomes_);
    }
    deliver_outcomes(outcomes);
    if (done) return;
    std::optional<std::chrono::nanoseconds> wait;
    if (spinning) {
      spin(timeout);
      // Polls that keep succeeding never reach epoll below: look at its events (exits, output
      // lines, which a worker blocks on once its pipe is full) at least once per millisecond.
      if (Clock::now() - last_event_wait_ < event_wait_interval) continue;
      wait = std::chrono::nanoseconds::zero();
    } else {
      if (timeout) wait = std::chrono::ceil<std::chrono::nanoseconds>(*timeout);
      if (backlog_polling_ && (!wait || *wait > backlog_poll_interval)) {
        wait = backlog_poll_interval;
      }
    }
    last_event_wait_ = Clock::now();
    poller_.wait(wait, ready);
  }
}

void Supervisor::make_cgroup_ahead() noexcept {
  if (worker_cgroups_) worker_cgroups_->make_ahead(spawner_.next_worker_id());
}

void Supervisor::on_ready_key(std::uint64_t key, Clock::time_point now) {
  switch (key) {
    case wake_key:
      return;  // what woke it is in the queue (edge-triggered: nothing to drain)
    case fork_answers_key:
      take_started(now, spawner_.take_answers(now));
      return;
    case fork_server_exit_key:
      return spawner_.finish_retirements(now);
    default:
      break;
  }
  auto it = workers_.find(key / 4);
  if (it == workers_.end()) return;  // already gone; a stale event from the same batch
  WorkerProcess& worker = *it->second;
  switch (key % 4) {
    case doorbell_key:
      break;  // the rings are polled in step(); edge-triggered, so nothing to drain
    case output_key:
      read_output(worker, false);
      break;
    case exit_key:
      on_exit(worker, now);
      break;
  }
}

std::optional<Clock::duration> Supervisor::step(Clock::time_point now) {
  const JobIntake::State intake = intake_.state();
  if (intake.drain_asked && !drain_deadline_) drain_deadline_ = now + *intake.drain_asked;
  const bool queued = intake.queued > 0;
  for (auto& [id, worker] : workers_) {
    if (worker->life.untrusted()) continue;
    read_responses(*worker, now);
    if (worker->job && worker->link.waiting_for_space() && !worker->life.untrusted())
      send_request(*worker);
  }
  if (drain_deadline_ && !final_stop_) {
    bool busy = std::any_of(workers_.begin(), workers_.end(),
                            [](const auto& w) { return w.second->job != nullptr; });
    if ((!busy && !queued) || now >= *drain_deadline_) begin_final_stop(now);
  }
  if (!final_stop_) {
    // Scale up on queue depth: jobs wait and no worker is free or coming.
    // Not while the head waits for memory: a new worker would only add to what it waits for.
    if (queued && scaled_target_ < options_.workers && !memory_budget_.holding()) {
      bool capacity_coming = spawner_.starting() > 0 ||
                             std::any_of(workers_.begin(), workers_.end(), [](const auto& w) {
                               return !w.second->life.leaving() &&
                                      (w.second->dispatchable() || !w.second->life.ready());
                             });
      if (!capacity_coming) ++scaled_target_;
    }
    spawn_workers(now);
    // A worker given its last job (max_jobs) retires as it gets it: start its replacement now,
    // alongside that job, so that it is ready about when the job ends.
    if (dispatch(now)) spawn_workers(now);
  }
  auto next = check_timers(now);
  if (!next) return std::nullopt;
  return std::max(Clock::duration::zero(), *next - now);
}

bool Supervisor::dispatch(Clock::time_point now) {
  bool retired = false;
  BudgetView budget;
  if (memory_budget_.enabled()) budget.in_use = memory_in_use(budget.may_free);
  // Every idle worker first gets a job of its own (not one lent to a Pool::call thread, even if
  // its job is done: its next result would wake that thread, which would deliver it)...
  for (auto& [id, worker] : workers_) {
    WorkerProcess& w = *worker;
    if (!w.dispatchable() || w.direct_call) continue;
    std::uint64_t peak = 0;
    std::unique_ptr<Job> job = take_job(budget, true, peak);
    if (!job) break;
    give_job(w, std::move(job), now);
    if (memory_budget_.enabled()) {
      w.memory.budget().add(w.memory.current(), peak);
      budget.in_use += peak;
      budget.may_free = true;
    }
    send_request(w);
    retired |= retire_if_last_job_given(w, now);
  }
  if (memory_budget_.enabled()) {
    // Whether the head waits for memory also matters with no worker idle (scaling up waits too).
    std::uint64_t peak = 0;
    take_job(budget, false, peak);
    if (memory_budget_.holding()) make_room(peak, budget.in_use, now);
  }
  // ...then busy workers running short jobs get more behind the one they run.
  if (options_.prefetch.max_jobs_ahead > 0) {
    for (auto& [id, worker] : workers_) {
      if (prefetch(*worker, budget.in_use, now)) retired |= retire_if_last_job_given(*worker, now);
    }
  }
  return retired;
}

std::unique_ptr<Job> Supervisor::take_job(const BudgetView& budget, bool take,
                                          std::uint64_t& peak) {
  std::vector<Job> refused;  // whose expected peak alone exceeds the budget
  bool holding = false;
  std::unique_ptr<Job> job = intake_.take_head(
      [&](Job& head) {
        if (!memory_budget_.enabled()) {
          return take ? JobIntake::HeadDecision::take : JobIntake::HeadDecision::keep;
        }
        peak = MemoryBudgetGate::expected_peak(head.options.expected_memory_bytes, head.name,
                                               job_stats_);
        auto admission =
            memory_budget_.admit(peak, budget.in_use, budget.may_free, head.held_for_memory);
        if (admission == MemoryBudgetGate::Admission::never_fits) {
          return JobIntake::HeadDecision::refuse;
        }
        holding = admission == MemoryBudgetGate::Admission::hold;
        return !holding && take ? JobIntake::HeadDecision::take : JobIntake::HeadDecision::keep;
      },
      refused);
  memory_budget_.set_holding(holding);
  for (Job& over : refused) {
    const std::uint64_t over_peak =
        MemoryBudgetGate::expected_peak(over.options.expected_memory_bytes, over.name, job_stats_);
    std::string why =
        memory_budget_.refusal(over.name, over_peak, over.options.expected_memory_bytes > 0);
    reporter_.log(LogLevel::warning, why);
    unsigned attempts = over.attempts;
    queue_outcome(over, job_failure(ErrorKind::memory_limit, std::move(why), attempts));
  }
  return job;
}

std::uint64_t Supervisor::memory_in_use(bool& may_free) const {
  std::uint64_t in_use = 0;
  for (const auto& [id, w] : workers_) {
    in_use += w->memory.budget_charge();
    may_free |= w->job != nullptr || w->life.leaving().has_value();
  }
  return in_use;
}

bool Supervisor::retire_if_last_job_given(WorkerProcess& w, Clock::time_point now) {
  if (w.life.leaving() || !w.job_limit || w.jobs_done + w.jobs_in_hand() < w.job_limit)
    return false;
  apply_policy(w, now);
  return w.life.leaving().has_value();
}

void Supervisor::give_job(WorkerProcess& w, std::unique_ptr<Job> job, Clock::time_point now) {
  ++job->attempts;
  w.job = std::move(job);
  w.link.begin_request();
  begin_job(w, now, true);
}

void Supervisor::begin_job(WorkerProcess& w, Clock::time_point now, bool fresh_start) {
  w.job_started_at = now;
  if (!fresh_start) {
    // It follows one just finished, with no reading between them: its memory change, and that of
    // the jobs still awaiting a reading, is not attributed (job stats), and the periodic sample
    // keeps running rather than starting over.
    w.memory.job_follows_without_reading();
  } else if (w.memory.unread_jobs_of_other_name(w.job->name)) {
    // The jobs awaiting a reading are another job's: they get theirs before this one runs.
    w.memory.read(now, true);
    attribute_memory(w);
  } else {
    w.memory.job_starts();
  }
  w.timers.job_deadline.reset();
  if (w.job->timeout.count() > 0) w.timers.job_deadline = now + w.job->timeout;
  w.timers.idle_reading_at.reset();
  if (fresh_start || !w.timers.sample_at) {
    w.timers.sample_at = now + options_.recycle.memory_sample_interval;
  }
}

bool Supervisor::prefetch(WorkerProcess& w, std::uint64_t& budget_in_use, Clock::time_point now) {
  const PrefetchPolicy& policy = options_.prefetch;
  if (!w.job || !w.life.ready() || w.life.leaving() || w.life.stop_sent() || w.life.untrusted() ||
      w.direct_call || !w.link.request_complete(*w.job) || !w.typical_job_time ||
      *w.typical_job_time >= policy.when_jobs_take_under) {
    return false;
  }
  // Nothing more behind a job that turned out long (what was there is being taken back).
  if (now - w.job_started_at >= policy.when_jobs_take_under && worker_runs(w, *w.job)) {
    return false;
  }
  // Never more work ahead than max_work_ahead at the current job time (at least 1 ns, so a worker
  // whose results arrive within one clock tick still has a finite share).
  std::size_t most = policy.max_jobs_ahead;
  auto job_time = std::max<Clock::duration>(*w.typical_job_time, std::chrono::nanoseconds(1));
  auto by_time = static_cast<std::uint64_t>(policy.max_work_ahead / job_time);
  if (by_time < most) most = static_cast<std::size_t>(by_time);
  auto free = w.link.requests().free_bytes();
  if (!free) return false;  // the next send reports the violation
  std::uint64_t space = *free;
  const std::size_t held_before = w.prefetched.size();
  // Decided under the intake's lock; the records are written once the jobs are out of the queue.
  intake_.take_while(
      [&](const Job& job) {
        if (w.prefetched.size() >= most ||
            (w.job_limit != 0 && w.jobs_done + w.jobs_in_hand() >= w.job_limit)) {
          return false;
        }
        // An in-place job's buffers are passed when it is dispatched to an idle worker: never
        // ahead.
        if (job.in_place) return false;
        // Only jobs whose request fits in one go: a prefetched job is sent whole, never streamed.
        const std::uint64_t bytes = WorkerLink::bytes_ahead(job);
        if (job.payload.size() > w.link.max_body() || bytes > space) return false;
        if (memory_budget_.enabled()) {
          const std::uint64_t peak = MemoryBudgetGate::expected_peak(
              job.options.expected_memory_bytes, job.name, job_stats_);
          if (!memory_budget_.fits(peak, budget_in_use)) return false;
          budget_in_use += peak;
        }
        space -= bytes;
        return true;
      },
      w.prefetched);
  const bool taken = w.prefetched.size() > held_before;
  for (std::size_t i = held_before; i < w.prefetched.size(); ++i) {
    Job& job = *w.prefetched[i];
    if (memory_budget_.enabled()) {
      w.memory.budget().add(
          w.memory.current(),
          MemoryBudgetGate::expected_peak(job.options.expected_memory_bytes, job.name, job_stats_));
    }
    ++job.attempts;
    w.link.send_ahead(job);  // fits: checked above
  }
  if (taken) w.link.publish();
  return taken;
}

void Supervisor::on_timers(WorkerProcess& w, Clock::time_point now) {
  WorkerTimers& timers = w.timers;
  if (timers.start_deadline && now >= *timers.start_deadline) {
    stop_worker(
        w, RecycleReason::start_failure, now,
        fmt::format("it did not report ready within {} ms", options_.start_timeout.count()));
  }
  if (timers.job_deadline && now >= *timers.job_deadline) {
    // What it has not read behind this job goes back to the queue first, so that no job sent
    // ahead is started only to be killed with this one. If it has read past this job, the job
    // ended after step() read its ring: its result is read at the next step (the deadline, still
    // set and past, keeps the loop from sleeping).
    if (take_back_unstarted(w) != TakeBack::worker_moved_on) {
      reporter_.log(
          LogLevel::warning,
          fmt::format("job '{}' on worker {} (pid {}) timed out after {} ms; stopping the "
                      "worker",
                      w.job->name, w.id, w.pid, w.job->timeout.count()));
      timers.job_deadline.reset();
      stop_worker(w, RecycleReason::job_timeout, now);
    }
  }
  if (timers.sample_at && now >= *timers.sample_at) {
    timers.sample_at = now + options_.recycle.memory_sample_interval;  // unset if it stops
    w.memory.read(now, true);
    apply_policy(w, now);
  }
  if (timers.idle_reading_at && now >= *timers.idle_reading_at) {
    timers.idle_reading_at.reset();
    w.memory.read(now, false);
    attribute_memory(w);
    apply_policy(w, now);
  }
  if (timers.policy_recheck_at && now >= *timers.policy_recheck_at) {
    timers.policy_recheck_at.reset();
    apply_policy(w, now);
  }
  if (timers.kill_at && now >= *timers.kill_at) {
    timers.kill_at.reset();
    w.kill();
  }
}

std::optional<Clock::time_point> Supervisor::take_back_overdue(WorkerProcess& w,
                                                               Clock::time_point now) {
  // Jobs sent ahead behind a job that has run longer than short jobs take go back to the queue,
  // for a free worker (or this one, once its job ends) to run. Only if the worker is still on
  // that job: one that has moved on, or not yet reached it, is late only in this thread's view
  // (results not yet read, a worker waiting for a CPU), and is looked at again later.
  if (w.prefetched.empty() || w.life.stop_sent()) return std::nullopt;
  const Clock::time_point overdue_at =
      std::max(w.job_started_at, w.late_check_at) + options_.prefetch.when_jobs_take_under;
  if (now < overdue_at) return overdue_at;
  if (!worker_runs(w, *w.job)) {
    w.late_check_at = now;
    return now + options_.prefetch.when_jobs_take_under;
  }
  take_back_unstarted(w);  // prepare_sleep sees them queued for an idle worker
  return std::nullopt;
}

std::optional<Clock::time_point> Supervisor::check_timers(Clock::time_point now) {
  std::optional<Clock::time_point> next;
  auto consider = [&](std::optional<Clock::time_point> t) {
    if (t && (!next || *t < *next)) next = t;
  };
  // Policy actions may stop workers but never erase them here (only on_exit does).
  for (auto& [id, worker] : workers_) {
    WorkerProcess& w = *worker;
    on_timers(w, now);
    consider(w.timers.next());
    consider(take_back_overdue(w, now));
  }
  std::optional<Clock::time_point> fork_server_deadline;
  take_started(now, spawner_.check_deadlines(now, fork_server_deadline));
  consider(fork_server_deadline);
  if (worker_cgroups_) {
    WorkerCgroups::Removals removals = worker_cgroups_->retry_removals(now);
    for (const std::string& left : removals.abandoned) {
      reporter_.log(
          LogLevel::warning,
          fmt::format("the memory cgroup {} of a worker that left is still in use; given up",
                      left));
    }
    consider(removals.next);
  }
  // A held-back spawn, or one due now after a failed start with no backoff (restart_backoff_initial
  // = 0): nothing else would wake the loop to retry it.
  if (!final_stop_ && next_spawn_at_ >= now) consider(next_spawn_at_);
  if (drain_deadline_ && !final_stop_) consider(drain_deadline_);
  return next;
}

bool Supervisor::prepare_sleep(Clock::time_point now) {
  backlog_polling_ = false;
  for (auto& [id, worker] : workers_) {
    WorkerProcess& w = *worker;
    if (w.life.untrusted()) continue;
    // A worker with jobs sent ahead is streaming short jobs: rather than have it ring the doorbell
    // for each result (a system call per job on each side), look at its ring again shortly. Not
    // once the job it runs has taken longer than a short job should: polling would then spin for
    // as long as that job runs, so it rings the doorbell again.
    bool streaming =
        !w.prefetched.empty() && now - w.job_started_at < options_.prefetch.when_jobs_take_under;
    if (streaming) {
      backlog_polling_ = true;
    } else {
      w.link.responses().begin_wait();
    }
    if (w.link.responses().has_data()) return false;
    if (w.link.waiting_for_space()) {
      w.link.requests().begin_wait();
      auto space = w.link.requests().free_bytes();
      if (!space || *space >= RingWriter::record_bytes(w.link.max_body())) return false;
    }
  }
  bool any_dispatchable = false, any_in_flight = false;
  for (auto& [id, worker] : workers_) {
    any_dispatchable |= worker->dispatchable();
    any_in_flight |= worker->job != nullptr;
  }
  // A new job could not start any sooner for waking us: no worker is free, none may be added, and
  // a job in flight guarantees an event (its result, or its worker's exit) that wakes us anyway.
  // Skipping that wake-up saves a system call per submit while short jobs stream through busy
  // workers; the job waits at most until the next result to be sent ahead.
  const bool wake_on_submit =
      any_dispatchable || !any_in_flight || target_workers() < options_.workers;
  return intake_.begin_sleep(!final_stop_ && any_dispatchable, drain_deadline_.has_value(),
                             wake_on_submit);
}

bool Supervisor::prepare_spin(bool delivered) {
  if (spin_hint_ == 0) return false;
  spin_rings_.clear();
  spin_space_.clear();
  // A peer that last ran on this CPU needs it to answer: polling for it only delays it.
  bool short_job = false, streaming = false;
  for (auto& [id, worker] : workers_) {
    WorkerProcess& w = *worker;
    // A Pool::call thread reads that ring itself; polling it here would race with it.
    if (w.life.untrusted() || !w.job || w.direct_call) continue;
    // Jobs sent ahead: prepare_sleep's backlog poll.
    if (!w.prefetched.empty()) return false;
    if (shares_cpu(w)) continue;
    if (w.link.waiting_for_space()) {
      // A payload streaming in: the worker frees a record's space in less time than waking this
      // thread takes, so the two copy side by side rather than in turns.
      spin_space_.push_back({&w.link.requests(), RingWriter::record_bytes(w.link.max_body())});
      streaming = true;
      continue;
    }
    short_job |= !w.typical_job_time || *w.typical_job_time < options_.spin.budget;
    streaming |= w.link.receiving();  // a result streaming out: its next record is a copy away
    spin_rings_.push_back(&w.link.responses());
  }
  // Worth it while a short job runs or a payload streams, or right after outcomes went out (their
  // callers often submit again at once); and only on a CPU besides those of the workers running
  // jobs or starting, which update_spin_hint counted in this iteration (spin_hint_). A wait that
  // would poll counts as one skipped while the poller backs off.
  delivered = delivered && !on_host_cpu(submit_cpu_.load(std::memory_order_relaxed));
  return (short_job || streaming || delivered) && spin_.take_turn();
}

bool Supervisor::on_host_cpu(int cpu) const noexcept {
  return host_cpu_ >= 0 && cpu == host_cpu_;
}

bool Supervisor::shares_cpu(WorkerProcess& w) const noexcept {
  return on_host_cpu(w.link.header().worker_cpu.load(std::memory_order_relaxed));
}

std::size_t Supervisor::cpus_in_use() const {
  const Clock::time_point now = Clock::now();
  std::size_t busy = spawner_.starting();  // processes being forked
  for (const auto& [id, worker] : workers_) {
    const WorkerProcess& w = *worker;
    if (!w.life.ready()) {
      ++busy;  // a process loading
    } else if (w.job) {
      // A short job about to end does not count. Counting every job made polling bimodal with
      // several callers: a supervisor that slept picked results up late, so both workers looked
      // busy for longer, so it slept again (and the reverse once it polled).
      busy += job_holds_cpu(w.typical_job_time, now - w.job_started_at, options_.spin.budget);
    }
  }
  return busy;
}

void Supervisor::update_spin_hint() {
  if (!options_.spin.enabled) return;
  if (int cpu = platform::current_cpu(); cpu != host_cpu_) {
    host_cpu_ = cpu;
    for (const auto& [id, worker] : workers_)
      worker->link.header().host_cpu.store(cpu, std::memory_order_relaxed);
  }
  std::uint32_t hint = cpus_in_use() < online_cpus_ ? 1 : 0;
  if (hint == spin_hint_) return;
  spin_hint_ = hint;
  for (const auto& [id, worker] : workers_)
    worker->link.header().spin_hint.store(hint, std::memory_order_relaxed);
}

void Supervisor::spin(std::optional<Clock::duration> limit) {
  const std::uint64_t submitted = reporter_.submitted();
  auto ready = [&] {
    for (const RingReader* ring : spin_rings_) {
      if (ring->has_data()) return true;
    }
    for (const SpaceWatch& watch : spin_space_) {
      std::optional<std::uint64_t> space = watch.ring->free_bytes();
      if (!space || *space >= watch.bytes) return true;  // an impossible position: step() says so
    }
    return reporter_.submitted() != submitted;
  };
  spin_.poll_now(ready, limit ? std::chrono::ceil<std::chrono::nanoseconds>(*limit)
                              : std::chrono::nanoseconds::max());
}

void Supervisor::end_sleep() {
  for (auto& [id, worker] : workers_) {
    worker->link.responses().end_wait();
    worker->link.requests().end_wait();
  }
  intake_.end_sleep();
}

void Supervisor::fail_queue(ErrorKind kind, const std::string& message) {
  JobQueue jobs = intake_.take_all();
  while (!jobs.empty()) {
    Job job = jobs.pop_front();
    unsigned attempts = job.attempts;
    queue_outcome(job, job_failure(kind, message, attempts));
  }
}

void Supervisor::emergency_stop() noexcept {
  try {
    intake_.stop(std::nullopt);
    std::lock_guard lock(state_mutex_);
    final_stop_ = true;
    fail_queue(ErrorKind::shutting_down, "the pool's supervisor failed");
    for (auto& [id, worker] : workers_) {
      platform::kill_process(worker->pidfd.get());
      platform::reap_blocking(worker->pid);
      // A Pool::call thread asleep on this worker's result wakes now, as on_exit would wake it,
      // before the segment holding the word it sleeps on is unmapped.
      if (worker->direct_call) platform::futex_wake_all(worker->link.responses().interrupt_wait());
      if (worker->job) worker->prefetched.push_front(std::move(worker->job));
      for (auto& job : worker->prefetched) {
        unsigned attempts = job->attempts;
        queue_outcome(
            *job, job_failure(ErrorKind::shutting_down, "the pool's supervisor failed", attempts));
      }
      worker->prefetched.clear();
    }
    workers_.clear();
  } catch (...) {
  }
  std::vector<Outcome> outcomes;
  outcomes.swap(outcomes_);
  deliver_outcomes(outcomes);
}

}  // namespace procpool::detail
