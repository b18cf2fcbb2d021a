// Pool::call's direct hand-off: a thread that wants one job's outcome and finds an idle worker
// gives it the job and takes the result itself, while the supervisor thread sleeps on.
//
// Why: on a CPU shared by caller, supervisor thread and worker, a job that goes through the
// supervisor thread costs four context switches (caller -> supervisor -> worker -> supervisor ->
// caller); handed over directly it costs two, as a raw futex ping-pong does. The calling thread
// does exactly what the supervisor thread would (dispatch, read_responses, finish_job, the recycle
// policy) under state_mutex_, so every rule holds as it does for a queued job, with three limits
// that keep the supervisor thread's own duties with it:
//  - it never starts a process (a worker's parent-death signal follows the thread that forked it):
//    a worker that would retire on this job is not taken, and a worker to replace wakes the
//    supervisor thread;
//  - log lines and events are deferred to the supervisor thread, which emits them (they keep
//    coming from it, as LogSink and EventCallback say);
//  - it waits for the result only until the supervisor thread would next have to act on the
//    worker (the job's timeout, its memory sample, a policy recheck) and then gives the job back to
//    that thread, so a sleeping supervisor never misses a timer; a worker that exits meanwhile
//    wakes it at once (on_exit). A worker's word is never trusted: every wait has that deadline.
//    Not a shorter one: a timed futex wait whose timer is the CPU's next event costs about 0.3 us
//    and a p99 three times the untimed one's (a 1 ms deadline did, a 5 ms one no longer).
#include <fmt/format.h>

#include <algorithm>

#include "supervisor.hpp"

namespace procpool::detail {

JobId Supervisor::call(std::string_view name, Bytes payload, const SubmitOptions& options,
                       OutcomeSink sink) {
  std::optional<JobResult> refusal = check_request(name, payload.size(), options);
  Job job = make_job(take_ids(1), name, std::move(payload), options, std::move(sink));
  return call(std::move(job), std::move(refusal));
}

JobId Supervisor::call_in_place(std::string_view name, LentBuffer input, LentBuffer output,
                                const SubmitOptions& options, OutcomeSink sink) {
  std::optional<JobResult> refusal;
  Job job = make_in_place_job(name, std::move(input), std::move(output), options, std::move(sink),
                              refusal);
  return call(std::move(job), std::move(refusal));
}

JobId Supervisor::call(Job job, std::optional<JobResult> refusal) {
  if (!refusal && std::this_thread::get_id() == supervisor_thread_id_.load()) {
    refusal = job_failure(ErrorKind::invalid_request,
                          "Pool::call from a completion callback would wait for the thread that "
                          "runs it: submit the job with a callback instead");
  }
  if (refusal) return submit_one(std::move(job), std::move(refusal));

  std::unique_lock lock(state_mutex_);
  const std::uint64_t peak =
      memory_budget_.enabled()
          ? MemoryBudgetGate::expected_peak(job.options.expected_memory_bytes, job.name, job_stats_)
          : 0;
  WorkerProcess* worker = direct_call_worker(peak);
  if (!worker) {
    lock.unlock();
    return submit_one(std::move(job), std::nullopt);
  }
  const JobId id = job.id;
  const std::uint64_t worker_id = worker->id;
  Clock::time_point now = Clock::now();

  auto owned = std::make_unique<Job>(std::move(job));
  // The result wakes this thread, not the supervisor thread's doorbell; and the worker is told
  // which CPU it answers to, so that it does not poll for its next job on the CPU this thread
  // needs to read the result (end_direct_call puts both back).
  worker->direct_call = true;
  worker->link.responses().end_wait(wake_by_default);
  if (const int cpu = platform::current_cpu(); cpu >= 0) {
    worker->link.header().host_cpu.store(cpu, std::memory_order_relaxed);
  }
  give_job(*worker, std::move(owned), now);
  if (memory_budget_.enabled()) worker->memory.budget().add(worker->memory.current(), peak);
  try {
    {
      Reporter::Deferral deferral(reporter_);
      send_request(*worker);
    }
    for (;;) {
      if (worker->link.responses().has_data()) {
        Reporter::Deferral deferral(reporter_);
        read_responses(*worker, now);
      }
      const bool done = !worker->job || worker->job->id != id;
      // Until the supervisor thread would next act on this worker (its job's timeout or memory
      // sample, a policy recheck), recomputed each turn since that thread may have acted meanwhile.
      const std::optional<Clock::time_point> give_back_at = worker->timers.next(false);
      // A payload that did not fit the ring, a broken protocol or a timer due: the supervisor
      // thread's to carry on with.
      if (done || worker->life.untrusted() || worker->link.waiting_for_space() ||
          (give_back_at && now >= *give_back_at)) {
        end_direct_call(lock, *worker, done);
        return id;
      }
      const std::uint32_t seen = worker->link.responses().begin_wait(wake_by_futex);
      if (worker->link.responses().has_data()) continue;
      // The word lies in the worker's segment. If the worker exits meanwhile, the supervisor
      // thread changes the word and wakes it (on_exit) before it unmaps the segment, so this wait
      // ends at once whether it began before or after that (an unmapped word fails the wait;
      // should another mapping land there, the deadline ends it), and the worker is looked up
      // again below before anything is read.
      const std::atomic<std::uint32_t>& word = worker->link.responses().wait_word();
      lock.unlock();
      platform::futex_wait(
          word, seen,
          give_back_at
              ? std::optional(std::chrono::ceil<std::chrono::nanoseconds>(*give_back_at - now))
              : std::nullopt);
      lock.lock();
      now = Clock::now();
      auto it = workers_.find(worker_id);
      // Gone: its exit gave the job its outcome (or a retry), on the supervisor thread.
      if (it == workers_.end()) return id;
      worker = it->second.get();
    }
  } catch (...) {
    // No memory to read the result into, say: the supervisor thread carries on with the job, and
    // its outcome goes to the future as usual.
    if (!lock.owns_lock()) lock.lock();
    if (auto it = workers_.find(worker_id); it != workers_.end() && it->second->direct_call) {
      it->second->direct_call = false;
      it->second->link.responses().end_wait(wake_by_futex);
    }
    lock.unlock();
    intake_.wake();
    throw;
  }
}

WorkerProcess* Supervisor::direct_call_worker(std::uint64_t peak) {
  if (final_stop_ || drain_deadline_) return nullptr;
  // Queued jobs go first; a stopping or degraded pool takes the queue's path to its refusal.
  if (const JobIntake::State intake = intake_.state();
      intake.stopping || intake.degraded || intake.drain_asked || intake.queued > 0) {
    return nullptr;
  }
  // A job the memory budget does not admit at once waits (or is refused) in the queue.
  if (memory_budget_.enabled()) {
    bool may_free = false;
    const std::uint64_t in_use = memory_in_use(may_free);
    if (!memory_budget_.fits(peak, in_use) && (may_free || peak > memory_budget_.bytes())) {
      return nullptr;
    }
  }
  // A direct hand-off saves two context switches of four with the pool on one CPU (a worker on
  // this thread's CPU that cannot move), and two sleeping wake-ups of four where nobody polls for
  // the result: SpinPolicy off, no CPU free, or a worker whose jobs take longer than a poll lasts.
  // Otherwise the supervisor thread polls for a short job's result on a free CPU, which a sleeping
  // caller cannot beat: the worker it wakes may well be moved to that CPU, and each wake-up across
  // CPUs costs tens of microseconds on a machine whose idle CPUs halt.
  const bool nobody_polls = !options_.spin.enabled || spin_hint_ == 0;
  const bool one_cpu = usable_cpus_ == 1;
  const int cpu = platform::current_cpu();
  WorkerProcess* elsewhere = nullptr;
  for (auto& [id, owned] : workers_) {
    WorkerProcess& worker = *owned;
    // dispatchable() rules out a worker that broke the protocol (it is leaving) or holds jobs sent
    // ahead (it has a job); another caller may still be finishing with an idle one.
    if (!worker.dispatchable() || worker.direct_call) continue;
    // Its last job (max_jobs): it retires on it, and starting its replacement is the supervisor
    // thread's.
    if (worker.job_limit && worker.jobs_done + 1 >= worker.job_limit) continue;
    const bool long_jobs =
        worker.typical_job_time && *worker.typical_job_time >= options_.spin.budget;
    if (!one_cpu && !nobody_polls && !long_jobs) continue;
    const int worker_cpu = worker.link.header().worker_cpu.load(std::memory_order_relaxed);
    if (cpu >= 0 && worker_cpu == cpu) return &worker;
    if ((nobody_polls || long_jobs) && !elsewhere) elsewhere = &worker;
  }
  return elsewhere;
}

void Supervisor::end_direct_call(std::unique_lock<std::mutex>& lock, WorkerProcess& worker,
                                 bool done) {
  worker.direct_call = false;
  worker.link.responses().end_wait(wake_by_futex);
  const JobIntake::State intake = intake_.state();
  const bool sleeping = intake.supervisor_sleeping, queued = intake.queued > 0;
  // As prepare_sleep left it: the worker rings the sleeping supervisor thread's doorbell again.
  if (sleeping && !worker.life.untrusted()) worker.link.responses().begin_wait(wake_by_default);
  // What update_spin_hint last wrote (-1, unknown, with SpinPolicy off): the worker also decides
  // on it whether to stream a result a ringful at a time.
  worker.link.header().host_cpu.store(host_cpu_, std::memory_order_relaxed);
  // The supervisor thread sleeps on unless it has something to do: a job to carry on with (with
  // its timers), lines or events to emit, a worker to stop or replace, jobs that arrived meanwhile
  // (it may have gone to sleep counting on this worker's result to wake it), or a timer due before
  // it would wake.
  const bool wake_supervisor = !done || queued || reporter_.has_deferred() ||
                               worker.life.leaving() || worker.life.untrusted() ||
                               !pending_replacements_.empty() ||
                               (sleeping && timer_before_wake(worker));
  std::vector<Outcome> outcomes;
  outcomes.swap(outcomes_);
  lock.unlock();
  if (wake_supervisor) intake_.wake();
  deliver_outcomes(outcomes);
}

bool Supervisor::timer_before_wake(const WorkerProcess& worker) const {
  std::optional<Clock::time_point> next = worker.timers.next(false);
  return next && (!sleep_until_ || *next < *sleep_until_);
}

}  // namespace procpool::detail
