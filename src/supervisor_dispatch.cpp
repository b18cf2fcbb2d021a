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

void Supervisor::return_prefetched(WorkerProcess& w) {
  if (w.prefetched.empty()) return;
  std::deque<std::unique_ptr<Job>> jobs;
  jobs.swap(w.prefetched);
  return_unstarted(std::move(jobs), w.pid);
}

Supervisor::TakeBack Supervisor::take_back_unstarted(WorkerProcess& w) {
  // Not for a job whose request is still streaming in, nor jobs a Pool::call thread handles.
  if (!w.job || w.life.untrusted() || w.direct_call || !w.link.request_complete(*w.job)) {
    return TakeBack::nothing;
  }
  std::atomic<std::uint64_t>& claims = w.link.header().job_claims;
  const std::uint32_t last_sent = w.link.starts_sent();
  // The jobs sent ahead, never the current one: its outcome is its own (a timeout counts from
  // dispatch, a stop's reason is its outcome), read or not.
  const std::uint32_t last_read =
      w.prefetched.empty() ? static_cast<std::uint32_t>(claims.load(std::memory_order_acquire))
                           : take_back_jobs(claims, w.prefetched.front()->start_number, last_sent);
  if (job_number_after(last_read, last_sent)) {
    kill_for_violation(
        w, fmt::format("it claims to have read job_start {} of the {} sent", last_read, last_sent));
    return TakeBack::nothing;
  }
  const bool moved_on = job_number_after(last_read, w.job->start_number);
  std::deque<std::unique_ptr<Job>> jobs;
  // Those numbered after last_read, if the take-back happened (it had read the current job).
  if (!job_number_after(w.job->start_number, last_read)) {
    while (!w.prefetched.empty() &&
           job_number_after(w.prefetched.back()->start_number, last_read)) {
      jobs.push_front(std::move(w.prefetched.back()));
      w.prefetched.pop_back();
    }
  }
  if (jobs.empty()) return moved_on ? TakeBack::worker_moved_on : TakeBack::nothing;
  reporter_.log(LogLevel::debug,
                fmt::format("took back {} job(s) worker {} (pid {}) had not started", jobs.size(),
                            w.id, w.pid));
  return_unstarted(std::move(jobs), w.pid);
  return moved_on ? TakeBack::worker_moved_on : TakeBack::taken;
}

bool Supervisor::worker_runs(WorkerProcess& w, const Job& job) {
  const std::uint64_t claims = w.link.header().job_claims.load(std::memory_order_acquire);
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
