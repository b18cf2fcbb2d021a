// Workers coming and going: spawning (with jittered limits), exits and what they mean for the job
// in hand, stopping, the recycle policy, restart backoff and the restart-storm breaker.
#include <fmt/format.h>

#include <algorithm>

#include "supervisor.hpp"

namespace procpool::detail {

using std::chrono::duration_cast;
using std::chrono::milliseconds;

namespace {

/// How a worker ended that died by a SIGKILL the supervisor did not send.
std::string describe_unsent_kill(const OomFinding& finding) {
  switch (finding.verdict) {
    case OomFinding::Verdict::oom_killer:
      return "was killed by the kernel's OOM killer (SIGKILL): " + finding.limit;
    case OomFinding::Verdict::not_counted:
      return "was killed by SIGKILL, not sent by procpool (the kernel counted no OOM kill: "
             "another process sent it)";
    case OomFinding::Verdict::unknown:
      break;
  }
  return "was killed by SIGKILL (not sent by procpool; possibly the OOM killer)";
}

std::string join_lines(const std::deque<std::string>& lines) {
  std::string out;
  for (const auto& line : lines) {
    out += line;
    out += '\n';
  }
  return out;
}

/// The reasons a policy retires a worker gracefully (it finishes its job first).
bool is_retirement(RecycleReason reason) {
  switch (reason) {
    case RecycleReason::max_jobs:
    case RecycleReason::max_lifetime:
    case RecycleReason::idle_timeout:
    case RecycleReason::scale_down:
    case RecycleReason::memory_budget:
    case RecycleReason::memory_soft_limit:
    case RecycleReason::memory_growth:
      return true;
    default:
      return false;
  }
}

/// Retirements that strike many workers at once unless capped.
bool is_synchronised(RecycleReason reason) {
  return reason == RecycleReason::max_lifetime || reason == RecycleReason::idle_timeout ||
         reason == RecycleReason::scale_down;
}

/// What the job a worker was running when it died becomes, given why the worker was leaving.
ErrorKind outcome_for(std::optional<RecycleReason> leaving) {
  if (!leaving) return ErrorKind::worker_crashed;
  switch (*leaving) {
    case RecycleReason::job_timeout:
      return ErrorKind::timeout;
    case RecycleReason::protocol_violation:
      return ErrorKind::protocol_violation;
    case RecycleReason::shutdown:
      return ErrorKind::shutting_down;
    case RecycleReason::memory_hard_limit:
      return ErrorKind::memory_limit;
    default:
      return ErrorKind::worker_crashed;  // it died on its own during its last job
  }
}

}  // namespace

std::size_t Supervisor::target_workers() const {
  if (!options_.min_workers) return options_.workers;
  return std::clamp(scaled_target_, *options_.min_workers, options_.workers);
}

void Supervisor::spawn_workers(Clock::time_point now) {
  auto live = spawner_.starting() + static_cast<std::size_t>(std::count_if(
                                        workers_.begin(), workers_.end(), [](const auto& entry) {
                                          return !entry.second->life.leaving();
                                        }));
  std::size_t target = target_workers();
  while (pending_replacements_.size() > target)
    pending_replacements_.pop_front();
  while (live < target && now >= next_spawn_at_ && spawner_.may_start()) {
    std::optional<RecycleReason> predecessor;
    if (!pending_replacements_.empty()) {
      predecessor = pending_replacements_.front();
      pending_replacements_.pop_front();
    }
    Spawner::Started started;
    try {
      started = spawner_.start(now, predecessor, worker_cgroups_ ? &*worker_cgroups_ : nullptr,
                               {spin_hint_, host_cpu_});
    } catch (const std::exception& e) {
      start_failed(now, e.what());
      return;
    }
    ++live;
    if (!take_started(now, std::move(started))) return;
  }
}

void Supervisor::start_failed(Clock::time_point now, const std::string& why) {
  reporter_.log(LogLevel::error, fmt::format("cannot start a worker: {}", why));
  ++start_failures_;
  ++recycles_[static_cast<std::size_t>(RecycleReason::start_failure)];
  note_unplanned_exit(now, why);
}

bool Supervisor::take_started(Clock::time_point now, Spawner::Started started) {
  bool all_well = started.failures.empty();
  for (const std::string& why : started.failures)
    start_failed(now, why);
  for (std::unique_ptr<WorkerProcess>& worker : started.workers) {
    try {
      watch_worker(std::move(worker));
    } catch (const std::exception& e) {
      start_failed(now, e.what());
      all_well = false;
    }
  }
  return all_well;
}

void Supervisor::watch_worker(std::unique_ptr<WorkerProcess> worker) {
  // A fork's answer may come after this thread moved to another CPU (update_spin_hint).
  if (options_.spin.enabled) {
    worker->link.header().host_cpu.store(host_cpu_, std::memory_order_relaxed);
  }
  try {
    worker->memory = WorkerMemory(worker->pid, options_.recycle.memory_metric);
    poller_.add(worker->link.doorbell(), poll_key(worker->id, doorbell_key), true);
    poller_.add(worker->pidfd.get(), poll_key(worker->id, exit_key));
    poller_.add(worker->link.output(), poll_key(worker->id, output_key));
  } catch (...) {
    platform::kill_process(worker->pidfd.get());
    poller_.remove(worker->link.doorbell());
    poller_.remove(worker->pidfd.get());
    platform::reap_blocking(worker->pid);
    throw;
  }
  ++workers_started_;
  std::optional<RecycleReason> predecessor = worker->predecessor_reason;
  PoolEvent event = worker_event(
      EventType::spawned, *worker,
      fmt::format("worker {} spawned (pid {}){}", worker->id, worker->pid,
                  predecessor
                      ? fmt::format(", replacing one that left: {}", to_string(*predecessor))
                      : ""));
  event.reason = predecessor;
  reporter_.emit(std::move(event), LogLevel::debug);
  workers_.emplace(worker->id, std::move(worker));
}

void Supervisor::on_exit(WorkerProcess& worker, Clock::time_point now) {
  // With the guard and its parent, where they are the host's (a child subreaper host).
  const SegmentHeader& header = worker.link.header();
  const std::int32_t guard_pids[2] = {header.guard_starter_pid.load(std::memory_order_relaxed),
                                      header.guard_pid.load(std::memory_order_relaxed)};
  std::optional<platform::ExitStatus> status =
      platform::reap_worker(worker.pid, worker.pidfd.get(), guard_pids, std::chrono::seconds(1));
  if (!status) return;
  // Room for the outcomes of every job it holds, before any leaves it: an allocation failing
  // later cannot drop one.
  reserve_outcomes(worker.jobs_in_hand());
  read_output(worker, true);
  // A result written just before it died still counts.
  if (!worker.life.untrusted()) read_responses(worker, now);
  std::string how = describe_exit(*status);
  // A SIGKILL the supervisor did not send: the kernel's counters say whether the OOM killer sent
  // it, and then that is the reason, whatever else was under way.
  std::optional<OomFinding> oom;
  if (status->signal && platform::is_sigkill(*status->signal) && !worker.life.kill_sent()) {
    std::optional<CgroupOomReading> own_cgroup;
    if (worker.cgroup) own_cgroup = worker.cgroup.oom_reading();
    oom = oom_attribution_.explain(own_cgroup);
    how = describe_unsent_kill(*oom);
  }
  worker.cgroup.release();
  const bool oom_killed =
      oom && oom->verdict == OomFinding::Verdict::oom_killer && worker.life.ready();
  // Planned only if the supervisor asked it to go; a retiring worker that dies during its last job
  // crashed. A worker killed for the hard limit before its first job is the limit's fault, not a
  // job's: counted like a failed start, so a limit below a fresh worker's size backs off and trips
  // the breaker instead of respawning in a loop. An OOM kill is its job's doing, as a hard limit
  // kill is; one without a job is not.
  bool killed_at_start = worker.life.leaving() == RecycleReason::memory_hard_limit &&
                         worker.jobs_done == 0 && !worker.job;
  bool planned = oom_killed ? worker.job != nullptr : worker.life.stop_sent() && !killed_at_start;
  RecycleReason reason =
      worker.life.stop_sent() && worker.life.leaving()
          ? *worker.life.leaving()
          : (worker.life.ready() ? RecycleReason::crash : RecycleReason::start_failure);
  if (!worker.life.ready() && reason != RecycleReason::shutdown)
    reason = RecycleReason::start_failure;
  if (oom_killed) {
    reason = RecycleReason::oom_kill;
    PoolEvent event = worker_event(
        EventType::oom_kill, worker,
        fmt::format(
            "the kernel's OOM killer ended worker {} (pid {}){}: {}", worker.id, worker.pid,
            worker.job ? fmt::format(" while it ran '{}'", worker.job->name) : std::string(),
            oom->limit));
    event.reason = reason;
    event.signal = status->signal;
    reporter_.emit(std::move(event), LogLevel::warning);
  }
  if (!worker.life.leaving()) {
    // It stops counting as live only now: its successor replaces a crash.
    pending_replacements_.push_back(reason);
  }

  return_prefetched(worker);
  if (worker.job) {
    std::unique_ptr<Job> job = std::move(worker.job);
    // A cancel accepted while it ran decides its outcome, whatever stopped the worker.
    ErrorKind kind =
        job->cancel  ? ErrorKind::cancelled
        : oom_killed ? ErrorKind::memory_limit
                     : outcome_for(worker.life.stop_sent() ? worker.life.leaving() : std::nullopt);
    if (kind == ErrorKind::timeout && job->deadline_passed) kind = ErrorKind::deadline_exceeded;
    std::string message;
    switch (kind) {
      case ErrorKind::deadline_exceeded:
        message =
            fmt::format("job '{}' ran past its deadline; its worker (pid {}) was stopped and {}",
                        job->name, worker.pid, how);
        break;
      case ErrorKind::cancelled:
        message = fmt::format("job '{}' was cancelled while it ran; its worker (pid {}) {}",
                              job->name, worker.pid, how);
        break;
      case ErrorKind::timeout:
        message = fmt::format(
            "job '{}' ran longer than its timeout of {} ms; its worker (pid {}) was stopped and {}",
            job->name, job->timeout.count(), worker.pid, how);
        break;
      case ErrorKind::protocol_violation:
        message =
            fmt::format("worker (pid {}) broke the protocol while running '{}': {}; it was killed",
                        worker.pid, job->name, worker.life.leaving_detail());
        break;
      case ErrorKind::shutting_down:
        message = fmt::format("the pool shut down while '{}' was running; its worker (pid {}) {}",
                              job->name, worker.pid, how);
        break;
      case ErrorKind::memory_limit:
        message = oom_killed ? fmt::format(
                                   "the kernel's OOM killer ended worker (pid {}) while it "
                                   "ran '{}': {}",
                                   worker.pid, job->name, oom->limit)
                             : fmt::format("worker (pid {}) was killed while running '{}': {}",
                                           worker.pid, job->name, worker.life.leaving_detail());
        break;
      default:
        message = fmt::format("worker (pid {}) {} while running '{}'", worker.pid, how, job->name);
        break;
    }
    job_stats_.record(job->name, false, now - worker.job_started_at);
    bool retryable = kind == ErrorKind::worker_crashed || kind == ErrorKind::timeout ||
                     kind == ErrorKind::memory_limit;
    bool retried = false;
    const bool past_deadline = job->options.deadline && now >= *job->options.deadline;
    if (retryable && past_deadline && job->options.idempotent &&
        job->attempts < job->options.max_attempts) {
      message += "; not retried: its deadline has passed";
    }
    if (retryable && job->options.idempotent && job->attempts < job->options.max_attempts &&
        !final_stop_ && !past_deadline) {
      const Clock::duration backoff = retry_backoff(*job);
      std::string retrying =
          fmt::format("{}; retrying (attempt {} of {}){}", message, job->attempts + 1,
                      job->options.max_attempts,
                      backoff > Clock::duration::zero()
                          ? fmt::format(" in {} ms", duration_cast<milliseconds>(backoff).count())
                          : std::string());
      if (backoff > Clock::duration::zero()) {
        retried = intake_.hold(job, now + backoff);  // not if the pool is degraded
      } else {
        std::deque<std::unique_ptr<Job>> again;
        again.push_back(std::move(job));
        retried = intake_.return_to_front(again);  // not if the pool is degraded
        if (!retried) job = std::move(again.front());
      }
      if (retried) {
        reporter_.log(LogLevel::warning, retrying);
        reporter_.count_retry();
      }
    }
    if (!retried) {
      JobError error;
      error.kind = kind;
      error.message = message;
      error.exit_code = status->exit_code;
      error.signal = status->signal;
      error.worker_stderr = join_lines(worker.link.output_tail());
      error.attempts = job->attempts;
      fail_job(worker, std::move(job), std::move(error),
               kind == ErrorKind::cancelled ? LogLevel::info : LogLevel::warning);
    }
  }

  ++workers_exited_;
  ++recycles_[static_cast<std::size_t>(reason)];
  PoolEvent event = worker_event(EventType::exited, worker, {});
  event.reason = reason;
  event.exit_code = status->exit_code;
  event.signal = status->signal;
  if (reason == RecycleReason::start_failure) {
    ++start_failures_;
    std::string tail = join_lines(worker.link.output_tail());
    std::string why = worker.life.leaving_detail().empty() ? how : worker.life.leaving_detail();
    event.message = fmt::format("worker (pid {}) {} before it was ready{}{}", worker.pid, why,
                                tail.empty() ? "" : "; its output:\n", tail);
    reporter_.emit(std::move(event), LogLevel::error);
    note_unplanned_exit(now,
                        fmt::format("worker (pid {}) {} before it was ready", worker.pid, why));
  } else {
    event.message = fmt::format("worker {} (pid {}) {} after {} job(s) ({})", worker.id, worker.pid,
                                how, worker.jobs_done, to_string(reason));
    reporter_.emit(std::move(event), planned ? LogLevel::debug : LogLevel::warning);
    if (!planned) note_unplanned_exit(now, fmt::format("worker (pid {}) {}", worker.pid, how));
  }
  // A Pool::call thread waiting for this worker's result sleeps until the worker's next timer:
  // it must learn now that the job has its outcome (or went back to the queue).
  if (worker.direct_call) platform::futex_wake_all(worker.link.responses().interrupt_wait());
  poller_.remove(worker.link.doorbell());
  poller_.remove(worker.pidfd.get());
  if (worker.link.output() >= 0) poller_.remove(worker.link.output());
  workers_.erase(worker.id);  // `worker` is gone from here on
}

Clock::duration Supervisor::retry_backoff(const Job& job) {
  const auto first = job.options.retry_backoff;
  if (first.count() <= 0) return Clock::duration::zero();
  // Doubled for each attempt after the first, capped so that it cannot overflow: 2^20 times the
  // first is longer than anyone waits for a retry.
  const unsigned doublings = std::min(job.attempts > 0 ? job.attempts - 1 : 0u, 20u);
  const auto full = std::chrono::duration_cast<Clock::duration>(first) * (1LL << doublings);
  std::uniform_int_distribution<Clock::rep> half(0, full.count() / 2);
  return full - Clock::duration(half(retry_jitter_));
}

void Supervisor::stop_worker(WorkerProcess& worker, RecycleReason reason, Clock::time_point now,
                             std::string detail) {
  // A violation overrides any gentler stop under way: the worker is not to be trusted.
  const bool violation = reason == RecycleReason::protocol_violation;
  if (violation ? worker.life.untrusted() : worker.life.stop_sent()) return;
  if (!violation && worker.life.ready()) {
    // Jobs it has not read are not its to finish or to die with: back to the queue, untouched.
    take_back_unstarted(worker);
    if (worker.life.untrusted()) return;  // what it claimed to have read gave it away: killed
  }
  // The stop's reason decides what the job in hand becomes (a timeout or a shutdown overtakes a
  // retirement under way); a successor is owed only once per worker.
  if (!worker.life.leaving() && reason != RecycleReason::shutdown &&
      reason != RecycleReason::scale_down && reason != RecycleReason::memory_budget) {
    pending_replacements_.push_back(reason);
  }
  if (violation) {
    worker.life.broke_protocol(std::move(detail));
  } else {
    worker.life.stop(reason, std::move(detail));
  }
  worker.link.abandon_request();
  worker.timers.stopping();
  bool graceful = reason == RecycleReason::job_timeout || reason == RecycleReason::shutdown ||
                  is_retirement(reason);
  if (!graceful || !worker.life.ready() || options_.kill_grace.count() == 0) {
    worker.timers.kill_at.reset();
    worker.kill();
    return;
  }
  if (!worker.job) {
    // Idle: ask it to leave through the ring; SIGKILL if it has not after the grace period.
    worker.link.send_stop();
  } else {
    platform::terminate_process(worker.pidfd.get());
  }
  worker.timers.kill_at = now + options_.kill_grace;
}

void Supervisor::kill_for_violation(WorkerProcess& worker, const std::string& what) {
  if (worker.life.untrusted()) return;
  reporter_.log(LogLevel::error,
                fmt::format("worker {} (pid {}) broke the protocol: {}; killing it", worker.id,
                            worker.pid, what));
  stop_worker(worker, RecycleReason::protocol_violation, Clock::now(), what);
}

void Supervisor::attribute_memory(WorkerProcess& worker) {
  if (std::optional<MemoryAttribution> attribution = worker.memory.attribute()) {
    job_stats_.record_memory(attribution->job_name, attribution->change, attribution->jobs);
  }
}

void Supervisor::apply_policy(WorkerProcess& worker, Clock::time_point now) {
  if (!worker.life.ready() || worker.life.stop_sent() || final_stop_) return;
  if (worker.life.leaving()) {
    // Retiring, its last job still running: only the hard limit still applies.
    const std::uint64_t hard = options_.recycle.memory_hard_limit;
    const std::optional<std::uint64_t>& memory = worker.memory.current();
    if (hard && memory && *memory > hard) {
      std::string detail = fmt::format("memory {} is over the hard limit of {}",
                                       format_bytes(*memory), format_bytes(hard));
      reporter_.log(LogLevel::warning, fmt::format("worker {} (pid {}): {}; killing it", worker.id,
                                                   worker.pid, detail));
      stop_worker(worker, RecycleReason::memory_hard_limit, now, std::move(detail));
    }
    return;
  }
  auto live = static_cast<std::size_t>(std::count_if(
      workers_.begin(), workers_.end(), [](const auto& x) { return !x.second->life.leaving(); }));
  WorkerFacts facts;
  facts.ready_at = worker.ready_at;
  facts.jobs_done = worker.jobs_done;
  facts.jobs_in_hand = worker.jobs_in_hand();
  facts.busy = worker.job != nullptr;
  facts.idle_since = worker.idle_since;
  facts.memory = worker.memory.current();
  facts.baseline = worker.memory.baseline();
  facts.job_limit = worker.job_limit;
  facts.lifetime_limit = worker.lifetime_limit;
  facts.soft_limit_waived = worker.memory.soft_limit_waived();
  facts.scale_down_when_idle = options_.min_workers && live > *options_.min_workers;
  Decision decision = decide(facts, options_.recycle, now);
  worker.timers.policy_recheck_at = decision.recheck_at;
  if (decision.verdict == Verdict::keep) return;

  if (decision.verdict == Verdict::kill_now) {
    reporter_.log(LogLevel::warning, fmt::format("worker {} (pid {}): {}; killing it", worker.id,
                                                 worker.pid, decision.detail));
    stop_worker(worker, decision.reason, now, decision.detail);
    return;
  }
  // Time-based retirements (lifetime, idle) strike workers started together at the same moment:
  // past the cap, the worker keeps serving and asks again shortly. Job-count and memory
  // retirements are each worker's own (and jittered), and are never postponed.
  if (is_synchronised(decision.reason)) {
    auto retiring =
        static_cast<std::size_t>(std::count_if(workers_.begin(), workers_.end(), [](const auto& x) {
          return x.second->life.leaving() && is_synchronised(*x.second->life.leaving());
        }));
    if (retiring >= options_.recycle.max_concurrent_recycles) {
      worker.timers.policy_recheck_at = now + milliseconds(20);
      return;
    }
  }
  worker.life.retire(decision.reason, decision.detail);
  worker.timers.policy_recheck_at.reset();
  if (decision.reason == RecycleReason::scale_down) {
    scaled_target_ = std::max(options_.min_workers.value_or(0), target_workers() - 1);
  } else {
    pending_replacements_.push_back(decision.reason);  // spawned at once, before this one leaves
  }
  PoolEvent event =
      worker_event(EventType::retiring, worker,
                   fmt::format("worker {} (pid {}) retiring ({}): {}", worker.id, worker.pid,
                               to_string(decision.reason), decision.detail));
  event.reason = decision.reason;
  reporter_.emit(std::move(event), LogLevel::info);
  release_retired(worker, now);
}

void Supervisor::make_room(std::uint64_t peak, std::uint64_t in_use, Clock::time_point now) {
  if (!options_.min_workers) return;
  std::vector<WorkerProcess*> idle;
  std::size_t live = 0;
  for (auto& [id, worker] : workers_) {
    if (!worker->life.leaving()) ++live;
    if (worker->dispatchable() && !worker->direct_call) idle.push_back(worker.get());
  }
  // The largest first. None needs to stay for the job: a worker runs or leaves (it is held), and
  // the one that finishes takes it, or one is started once it fits.
  std::sort(idle.begin(), idle.end(), [](const WorkerProcess* a, const WorkerProcess* b) {
    return a->memory.budget_charge() > b->memory.budget_charge();
  });
  for (std::size_t i = 0;
       i < idle.size() && live > *options_.min_workers && !memory_budget_.fits(peak, in_use);
       ++i, --live) {
    WorkerProcess& worker = *idle[i];
    const std::uint64_t held = worker.memory.budget_charge();
    in_use -= std::min(in_use, held);
    scaled_target_ = std::max(*options_.min_workers, target_workers() - 1);
    std::string detail =
        fmt::format("idle, holding {} while a job waits for the memory budget", format_bytes(held));
    PoolEvent event =
        worker_event(EventType::retiring, worker,
                     fmt::format("worker {} (pid {}) retiring ({}): {}", worker.id, worker.pid,
                                 to_string(RecycleReason::memory_budget), detail));
    event.reason = RecycleReason::memory_budget;
    reporter_.emit(std::move(event), LogLevel::info);
    stop_worker(worker, RecycleReason::memory_budget, now, std::move(detail));
  }
}

void Supervisor::release_retired(WorkerProcess& worker, Clock::time_point now) {
  if (!worker.life.leaving() || worker.life.stop_sent() || worker.job ||
      !is_retirement(*worker.life.leaving()))
    return;
  stop_worker(worker, *worker.life.leaving(), now);
}

void Supervisor::note_unplanned_exit(Clock::time_point now, const std::string& why) {
  unplanned_exits_.push_back(now);
  while (!unplanned_exits_.empty() &&
         now - unplanned_exits_.front() > options_.restart_storm_window) {
    unplanned_exits_.pop_front();
  }
  auto failures = static_cast<unsigned>(unplanned_exits_.size());
  unsigned shift = std::min(failures - 1, 20u);
  auto backoff = std::min<milliseconds>(options_.restart_backoff_initial * (1u << shift),
                                        options_.restart_backoff_max);
  next_spawn_at_ = now + backoff;
  reporter_.log(LogLevel::warning,
                fmt::format("{} unplanned worker exit(s) in a row; next start in {} ms", failures,
                            backoff.count()));
  if (failures >= options_.restart_storm_threshold) {
    set_degraded(
        true, fmt::format("{} workers in a row failed to start or crashed within {} ms; last: {}",
                          failures, options_.restart_storm_window.count(), why));
  }
}

void Supervisor::note_job_completed() {
  unplanned_exits_.clear();  // a worker did real work: the run of failures is over
}

void Supervisor::set_degraded(bool degraded, const std::string& why) {
  if (!intake_.set_degraded(degraded)) return;
  PoolEvent event;
  event.type = degraded ? EventType::degraded : EventType::recovered;
  if (degraded) {
    event.message = fmt::format(
        "the pool is degraded: {}; jobs fail with pool_degraded until a worker starts", why);
    reporter_.emit(std::move(event), LogLevel::error);
    fail_queue(ErrorKind::pool_degraded, fmt::format("the pool is degraded: {}", why));
  } else {
    event.message = fmt::format("the pool is healthy again: {}", why);
    reporter_.emit(std::move(event), LogLevel::info);
  }
}

void Supervisor::begin_final_stop(Clock::time_point now) {
  final_stop_ = true;
  fail_queue(ErrorKind::shutting_down, "the pool shut down before the job started");
  for (auto& [id, worker] : workers_) {
    if (worker->life.stop_sent()) continue;
    stop_worker(*worker, RecycleReason::shutdown, now);
  }
  // Workers the fork server has not reported are not wanted now, and the pool does not wait for
  // them: the server is retired, and each worker it reports late is killed.
  spawner_.abandon_starts(now);
}

}  // namespace procpool::detail
