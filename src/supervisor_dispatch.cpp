// Giving jobs to workers: the head of the queue to each idle worker (as the memory budget admits
// it), jobs ahead to busy workers running short ones (PrefetchPolicy), and taking back the jobs
// sent ahead that a worker has not started.
#include <fmt/format.h>

#include <algorithm>

#include "channel/job_claims.hpp"
#include "supervisor.hpp"

namespace procpool::detail {

bool Supervisor::dispatch(Clock::time_point now) {
  bool retired = false;
  BudgetView budget;
  if (memory_budget_.enabled()) budget.in_use = memory_in_use(budget.may_free);
  // Every idle worker first gets a job of its own (not one lent to a Pool::call thread, even if
  // its job is done: its next result would wake that thread, which would deliver it)...
  for (auto& [id, owned] : workers_) {
    WorkerProcess& worker = *owned;
    if (!worker.dispatchable() || worker.direct_call) continue;
    std::uint64_t peak = 0;
    std::unique_ptr<Job> job = take_job(budget, true, peak);
    if (!job) break;
    give_job(worker, std::move(job), now);
    if (memory_budget_.enabled()) {
      worker.memory.budget().add(worker.memory.current(), peak);
      budget.in_use += peak;
      budget.may_free = true;
    }
    send_request(worker);
    retired |= retire_if_last_job_given(worker, now);
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
  for (const auto& [id, worker] : workers_) {
    in_use += worker->memory.budget_charge();
    may_free |= worker->job != nullptr || worker->life.leaving().has_value();
  }
  return in_use;
}

bool Supervisor::retire_if_last_job_given(WorkerProcess& worker, Clock::time_point now) {
  if (worker.life.leaving() || !worker.job_limit ||
      worker.jobs_done + worker.jobs_in_hand() < worker.job_limit)
    return false;
  apply_policy(worker, now);
  return worker.life.leaving().has_value();
}

void Supervisor::give_job(WorkerProcess& worker, std::unique_ptr<Job> job, Clock::time_point now) {
  ++job->attempts;
  worker.job = std::move(job);
  worker.link.begin_request();
  begin_job(worker, now, true);
}

void Supervisor::begin_job(WorkerProcess& worker, Clock::time_point now, bool fresh_start) {
  worker.job_started_at = now;
  if (!fresh_start) {
    // It follows one just finished, with no reading between them: its memory change, and that of
    // the jobs still awaiting a reading, is not attributed (job stats), and the periodic sample
    // keeps running rather than starting over.
    worker.memory.job_follows_without_reading();
  } else if (worker.memory.unread_jobs_of_other_name(worker.job->name)) {
    // The jobs awaiting a reading are another job's: they get theirs before this one runs.
    worker.memory.read(now, true);
    attribute_memory(worker);
  } else {
    worker.memory.job_starts();
  }
  worker.timers.job_deadline = worker.job->must_stop_by(now);
  worker.timers.idle_reading_at.reset();
  if (fresh_start || !worker.timers.sample_at) {
    worker.timers.sample_at = now + options_.recycle.memory_sample_interval;
  }
}

bool Supervisor::prefetch(WorkerProcess& worker, std::uint64_t& budget_in_use,
                          Clock::time_point now) {
  const PrefetchPolicy& policy = options_.prefetch;
  if (!worker.job || !worker.life.ready() || worker.life.leaving() || worker.life.stop_sent() ||
      worker.life.untrusted() || worker.direct_call || !worker.link.request_complete(*worker.job) ||
      !worker.typical_job_time || *worker.typical_job_time >= policy.when_jobs_take_under) {
    return false;
  }
  // Nothing more behind a job that turned out long (what was there is being taken back).
  if (now - worker.job_started_at >= policy.when_jobs_take_under &&
      worker_runs(worker, *worker.job)) {
    return false;
  }
  // Never more work ahead than max_work_ahead at the current job time (at least 1 ns, so a worker
  // whose results arrive within one clock tick still has a finite share).
  std::size_t most = policy.max_jobs_ahead;
  auto job_time = std::max<Clock::duration>(*worker.typical_job_time, std::chrono::nanoseconds(1));
  auto by_time = static_cast<std::uint64_t>(policy.max_work_ahead / job_time);
  if (by_time < most) most = static_cast<std::size_t>(by_time);
  auto free = worker.link.requests().free_bytes();
  if (!free) return false;  // the next send reports the violation
  std::uint64_t space = *free;
  const std::size_t held_before = worker.prefetched.size();
  // Decided under the intake's lock; the records are written once the jobs are out of the queue.
  intake_.take_while(
      [&](const Job& job) {
        if (worker.prefetched.size() >= most ||
            (worker.job_limit != 0 &&
             worker.jobs_done + worker.jobs_in_hand() >= worker.job_limit)) {
          return false;
        }
        // An in-place job's buffers are passed when it is dispatched to an idle worker: never
        // ahead. Nor a job whose deadline could pass while it waits behind others: stopped
        // there, it would cost the worker.
        if (job.in_place ||
            (job.options.deadline && *job.options.deadline <= now + policy.max_work_ahead)) {
          return false;
        }
        // Only jobs whose request fits in one go: a prefetched job is sent whole, never streamed.
        const std::uint64_t bytes = WorkerLink::bytes_ahead(job);
        if (job.payload.size() > worker.link.max_body() || bytes > space) return false;
        if (memory_budget_.enabled()) {
          const std::uint64_t peak = MemoryBudgetGate::expected_peak(
              job.options.expected_memory_bytes, job.name, job_stats_);
          if (!memory_budget_.fits(peak, budget_in_use)) return false;
          budget_in_use += peak;
        }
        space -= bytes;
        return true;
      },
      worker.prefetched);
  const bool taken = worker.prefetched.size() > held_before;
  for (std::size_t i = held_before; i < worker.prefetched.size(); ++i) {
    Job& job = *worker.prefetched[i];
    if (memory_budget_.enabled()) {
      worker.memory.budget().add(
          worker.memory.current(),
          MemoryBudgetGate::expected_peak(job.options.expected_memory_bytes, job.name, job_stats_));
    }
    ++job.attempts;
    worker.link.send_ahead(job);  // fits: checked above
  }
  if (taken) worker.link.publish();
  return taken;
}

void Supervisor::return_prefetched(WorkerProcess& worker) {
  if (worker.prefetched.empty()) return;
  std::deque<std::unique_ptr<Job>> jobs;
  jobs.swap(worker.prefetched);
  return_unstarted(std::move(jobs), worker.pid);
}

Supervisor::TakeBack Supervisor::take_back_unstarted(WorkerProcess& worker) {
  // Not for a job whose request is still streaming in, nor jobs a Pool::call thread handles.
  if (!worker.job || worker.life.untrusted() || worker.direct_call ||
      !worker.link.request_complete(*worker.job)) {
    return TakeBack::nothing;
  }
  std::atomic<std::uint64_t>& claims = worker.link.header().job_claims;
  const std::uint32_t last_sent = worker.link.starts_sent();
  // The jobs sent ahead, never the current one: its outcome is its own (a timeout counts from
  // dispatch, a stop's reason is its outcome), read or not.
  const std::uint32_t last_read =
      worker.prefetched.empty()
          ? static_cast<std::uint32_t>(claims.load(std::memory_order_acquire))
          : take_back_jobs(claims, worker.prefetched.front()->start_number, last_sent);
  if (job_number_after(last_read, last_sent)) {
    kill_for_violation(worker, fmt::format("it claims to have read job_start {} of the {} sent",
                                           last_read, last_sent));
    return TakeBack::nothing;
  }
  if (job_number_after(worker.job->start_number, last_read)) return TakeBack::not_reached;
  const bool moved_on = job_number_after(last_read, worker.job->start_number);
  std::deque<std::unique_ptr<Job>> jobs;
  // Those numbered after last_read: the take-back happened (it had read the current job).
  while (!worker.prefetched.empty() &&
         job_number_after(worker.prefetched.back()->start_number, last_read)) {
    jobs.push_front(std::move(worker.prefetched.back()));
    worker.prefetched.pop_back();
  }
  if (jobs.empty()) return moved_on ? TakeBack::worker_moved_on : TakeBack::nothing;
  reporter_.log(LogLevel::debug,
                fmt::format("took back {} job(s) worker {} (pid {}) had not started", jobs.size(),
                            worker.id, worker.pid));
  return_unstarted(std::move(jobs), worker.pid);
  return moved_on ? TakeBack::worker_moved_on : TakeBack::taken;
}

bool Supervisor::take_back_unread(WorkerProcess& worker, Clock::time_point now) {
  // Not one whose request is still streaming in, one a Pool::call thread handles, nor one that is
  // leaving (it retires on this job, and would then be owed a stop).
  if (!worker.job || worker.life.untrusted() || worker.life.leaving() || worker.direct_call ||
      !worker.link.request_complete(*worker.job)) {
    return false;
  }
  // Nothing if it has read its current job (or the claims are beyond belief, which
  // take_back_unstarted reports).
  if (!take_back_all_jobs(worker.link.header().job_claims, worker.job->start_number,
                          worker.link.starts_sent())) {
    return false;
  }
  std::deque<std::unique_ptr<Job>> jobs;
  jobs.swap(worker.prefetched);
  jobs.push_front(std::move(worker.job));
  // Idle again, as if the jobs had never been given: it skips their records when it reads them.
  worker.timers.job_deadline.reset();
  worker.timers.sample_at.reset();
  worker.idle_since = now;
  worker.memory.budget().clear();
  reporter_.log(LogLevel::debug, fmt::format("took back {} job(s) worker {} (pid {}) had not read",
                                             jobs.size(), worker.id, worker.pid));
  return_unstarted(std::move(jobs), worker.pid);
  return true;
}

bool Supervisor::worker_runs(WorkerProcess& worker, const Job& job) {
  const std::uint64_t claims = worker.link.header().job_claims.load(std::memory_order_acquire);
  return static_cast<std::uint32_t>(claims) == job.start_number;
}

void Supervisor::return_unstarted(std::deque<std::unique_ptr<Job>> jobs, int pid) {
  // Never started: they keep their place at the head of the queue and their attempt count.
  for (auto& job : jobs)
    --job->attempts;
  if (!final_stop_ && intake_.return_to_front(jobs)) return;
  ErrorKind kind = final_stop_ ? ErrorKind::shutting_down : ErrorKind::pool_degraded;
  for (auto& job : jobs) {
    unsigned attempts = job->attempts;
    queue_outcome(
        *job, job_failure(kind,
                          fmt::format("the pool {} before the job started (worker pid {} had it "
                                      "and did not start it)",
                                      final_stop_ ? "shut down" : "is degraded", pid),
                          attempts));
  }
}

}  // namespace procpool::detail
