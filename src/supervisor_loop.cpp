// The supervisor thread's loop: wake on events, read every worker's ring, start workers, dispatch,
// act on timers, then poll briefly (SpinPolicy) or sleep until the next event or timer.
#include <fmt/format.h>

#include <algorithm>

#include "supervisor.hpp"

namespace procpool::detail {

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
  // Held for a retry's backoff: not dispatchable yet, but a drain waits for them.
  const bool waiting = queued || intake.held > 0;
  for (auto& [id, worker] : workers_) {
    if (worker->life.untrusted()) continue;
    read_responses(*worker, now);
    if (worker->job && worker->link.waiting_for_space() && !worker->life.untrusted())
      send_request(*worker);
  }
  if (drain_deadline_ && !final_stop_) {
    bool busy = std::any_of(workers_.begin(), workers_.end(),
                            [](const auto& entry) { return entry.second->job != nullptr; });
    if ((!busy && !waiting) || now >= *drain_deadline_) begin_final_stop(now);
  }
  if (!final_stop_) {
    // Scale up on queue depth: jobs wait and no worker is free or coming.
    // Not while the head waits for memory: a new worker would only add to what it waits for.
    if (queued && scaled_target_ < options_.workers && !memory_budget_.holding()) {
      bool capacity_coming = spawner_.starting() > 0 ||
                             std::any_of(workers_.begin(), workers_.end(), [](const auto& entry) {
                               return !entry.second->life.leaving() &&
                                      (entry.second->dispatchable() || !entry.second->life.ready());
                             });
      if (!capacity_coming) ++scaled_target_;
    }
    spawn_workers(now);
    intake_.release_held(now);
    fail_expired(now);
    // A worker given its last job (max_jobs) retires as it gets it: start its replacement now,
    // alongside that job, so that it is ready about when the job ends.
    if (dispatch(now)) spawn_workers(now);
  }
  auto next = check_timers(now);
  if (!next) return std::nullopt;
  return std::max(Clock::duration::zero(), *next - now);
}

void Supervisor::on_timers(WorkerProcess& worker, Clock::time_point now) {
  WorkerTimers& timers = worker.timers;
  if (timers.start_deadline && now >= *timers.start_deadline) {
    stop_worker(
        worker, RecycleReason::start_failure, now,
        fmt::format("it did not report ready within {} ms", options_.start_timeout.count()));
  }
  if (timers.job_deadline && now >= *timers.job_deadline) {
    // What it has not read behind this job goes back to the queue first, so that no job sent
    // ahead is started only to be killed with this one. If it has read past this job, the job
    // ended after step() read its ring: its result is read at the next step. If it has not reached
    // this job yet, nothing behind it can be taken back: it is given reach_wait to get there. (The
    // deadline, still set and past, keeps the loop from sleeping meanwhile.)
    const TakeBack back = take_back_unstarted(worker);
    const bool wait_to_reach =
        back == TakeBack::not_reached && now - *timers.job_deadline < reach_wait;
    if (back != TakeBack::worker_moved_on && !wait_to_reach && !worker.life.untrusted()) {
      timers.job_deadline.reset();
      const std::optional<Clock::time_point>& deadline = worker.job->options.deadline;
      if (worker.job->cancel) {
        reporter_.log(LogLevel::info,
                      fmt::format("job '{}' on worker {} (pid {}) was cancelled{}; killing the "
                                  "worker",
                                  worker.job->name, worker.id, worker.pid,
                                  worker.job->cancel == CancelMode::interrupt
                                      ? " and still ran after kill_grace"
                                      : ""));
        stop_worker(worker, RecycleReason::job_cancelled, now);
      } else if (deadline && now >= *deadline) {
        reporter_.log(LogLevel::warning,
                      fmt::format("job '{}' on worker {} (pid {}) ran past its deadline; stopping "
                                  "the worker",
                                  worker.job->name, worker.id, worker.pid));
        worker.job->deadline_passed = true;
        stop_worker(worker, RecycleReason::job_timeout, now);
      } else {
        reporter_.log(
            LogLevel::warning,
            fmt::format("job '{}' on worker {} (pid {}) timed out after {} ms; stopping the "
                        "worker",
                        worker.job->name, worker.id, worker.pid, worker.job->timeout.count()));
        stop_worker(worker, RecycleReason::job_timeout, now);
      }
    }
  }
  if (timers.sample_at && now >= *timers.sample_at) {
    timers.sample_at = now + options_.recycle.memory_sample_interval;  // unset if it stops
    worker.memory.read(now, true);
    apply_policy(worker, now);
  }
  if (timers.idle_reading_at && now >= *timers.idle_reading_at) {
    timers.idle_reading_at.reset();
    worker.memory.read(now, false);
    attribute_memory(worker);
    apply_policy(worker, now);
  }
  if (timers.policy_recheck_at && now >= *timers.policy_recheck_at) {
    timers.policy_recheck_at.reset();
    apply_policy(worker, now);
  }
  if (timers.kill_at && now >= *timers.kill_at) {
    timers.kill_at.reset();
    worker.kill();
  }
}

std::optional<Clock::time_point> Supervisor::take_back_overdue(WorkerProcess& worker,
                                                               Clock::time_point now) {
  // Jobs sent ahead behind a job that has run longer than short jobs take go back to the queue,
  // for a free worker (or this one, once its job ends) to run. Only if the worker is still on
  // that job: one that has moved on, or not yet reached it, is late only in this thread's view
  // (results not yet read, a worker waiting for a CPU), and is looked at again later.
  if (worker.prefetched.empty() || worker.life.stop_sent()) return std::nullopt;
  const Clock::time_point overdue_at = std::max(worker.job_started_at, worker.late_check_at) +
                                       options_.prefetch.when_jobs_take_under;
  if (now < overdue_at) return overdue_at;
  if (!worker_runs(worker, *worker.job)) {
    worker.late_check_at = now;
    return now + options_.prefetch.when_jobs_take_under;
  }
  take_back_unstarted(worker);  // prepare_sleep sees them queued for an idle worker
  return std::nullopt;
}

std::optional<Clock::time_point> Supervisor::check_timers(Clock::time_point now) {
  std::optional<Clock::time_point> next;
  auto consider = [&](std::optional<Clock::time_point> t) {
    if (t && (!next || *t < *next)) next = t;
  };
  // Policy actions may stop workers but never erase them here (only on_exit does).
  for (auto& [id, owned] : workers_) {
    WorkerProcess& worker = *owned;
    on_timers(worker, now);
    consider(worker.timers.next());
    consider(take_back_overdue(worker, now));
  }
  // Queued jobs' deadlines, when a sleeping supervisor must wake to fail them.
  if (!final_stop_) {
    consider(intake_.earliest_deadline());
    consider(intake_.next_release());  // retries waiting out their backoff
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
  for (auto& [id, owned] : workers_) {
    WorkerProcess& worker = *owned;
    if (worker.life.untrusted()) continue;
    // A worker with jobs sent ahead is streaming short jobs: rather than have it ring the doorbell
    // for each result (a system call per job on each side), look at its ring again shortly. Not
    // once the job it runs has taken longer than a short job should: polling would then spin for
    // as long as that job runs, so it rings the doorbell again.
    bool streaming = !worker.prefetched.empty() &&
                     now - worker.job_started_at < options_.prefetch.when_jobs_take_under;
    if (streaming) {
      backlog_polling_ = true;
    } else {
      worker.link.responses().begin_wait();
    }
    if (worker.link.responses().has_data()) return false;
    if (worker.link.waiting_for_space()) {
      worker.link.requests().begin_wait();
      auto space = worker.link.requests().free_bytes();
      if (!space || *space >= RingWriter::record_bytes(worker.link.max_body())) return false;
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
  for (auto& [id, owned] : workers_) {
    WorkerProcess& worker = *owned;
    // A Pool::call thread reads that ring itself; polling it here would race with it.
    if (worker.life.untrusted() || !worker.job || worker.direct_call) continue;
    // Jobs sent ahead: prepare_sleep's backlog poll.
    if (!worker.prefetched.empty()) return false;
    if (shares_cpu(worker)) continue;
    if (worker.link.waiting_for_space()) {
      // A payload streaming in: the worker frees a record's space in less time than waking this
      // thread takes, so the two copy side by side rather than in turns.
      spin_space_.push_back(
          {&worker.link.requests(), RingWriter::record_bytes(worker.link.max_body())});
      streaming = true;
      continue;
    }
    short_job |= !worker.typical_job_time || *worker.typical_job_time < options_.spin.budget;
    streaming |= worker.link.receiving();  // a result streaming out: its next record is a copy away
    spin_rings_.push_back(&worker.link.responses());
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

bool Supervisor::shares_cpu(WorkerProcess& worker) const noexcept {
  return on_host_cpu(worker.link.header().worker_cpu.load(std::memory_order_relaxed));
}

std::size_t Supervisor::cpus_in_use() const {
  const Clock::time_point now = Clock::now();
  std::size_t busy = spawner_.starting();  // processes being forked
  for (const auto& [id, owned] : workers_) {
    const WorkerProcess& worker = *owned;
    if (!worker.life.ready()) {
      ++busy;  // a process loading
    } else if (worker.job) {
      // A short job about to end does not count. Counting every job made polling bimodal with
      // several callers: a supervisor that slept picked results up late, so both workers looked
      // busy for longer, so it slept again (and the reverse once it polled).
      busy +=
          job_holds_cpu(worker.typical_job_time, now - worker.job_started_at, options_.spin.budget);
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

void Supervisor::fail_expired(Clock::time_point now) {
  const std::optional<Clock::time_point> earliest = intake_.earliest_deadline();
  if (!earliest || *earliest > now) return;
  std::vector<Job> expired;
  intake_.take_expired(now, expired);
  for (Job& job : expired) {
    unsigned attempts = job.attempts;
    queue_outcome(job, job_failure(ErrorKind::deadline_exceeded,
                                   attempts == 0 ? "its deadline passed while it was queued; it "
                                                   "never started"
                                                 : "its deadline passed while it waited to be "
                                                   "retried",
                                   attempts));
  }
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
