// The supervisor's side of the channel: what to do with what a worker's link (worker_link.hpp)
// sent, read and returned: its hello, each job's result, a broken protocol, its output lines.
#include <fmt/format.h>

#include "supervisor.hpp"

namespace procpool::detail {

using std::chrono::duration_cast;
using std::chrono::milliseconds;

void Supervisor::send_request(WorkerProcess& worker) {
  // Not to a worker on this thread's CPU: it would take the CPU at each record (a context switch
  // per record each way); it gets a ringful at once instead.
  const WorkerLink::Sent sent = worker.link.send(*worker.job, !shares_cpu(worker));
  // An interrupt asked for before its job_start record went out is passed on once it has.
  if (worker.job->cancel == CancelMode::interrupt) worker.link.ask_to_stop(*worker.job);
  switch (sent) {
    case WorkerLink::Sent::whole:
    case WorkerLink::Sent::waiting_for_space:
      return;
    case WorkerLink::Sent::ring_broken:
      return kill_for_violation(worker, "its read position in the request ring is impossible");
    case WorkerLink::Sent::buffers_refused:
      // It died (or closed its channel): its exit, handled as any crash, decides what becomes of
      // the job (a retry if it is idempotent).
      reporter_.log(LogLevel::warning,
                    fmt::format("worker {} (pid {}) does not take an in-place job's buffers (it "
                                "died or closed its channel); killing it",
                                worker.id, worker.pid));
      worker.kill();
      return;
  }
}

void Supervisor::read_responses(WorkerProcess& worker, Clock::time_point now) {
  while (std::optional<Arrival> arrival = worker.link.read(worker.job.get())) {
    switch (arrival->kind) {
      case Arrival::Kind::hello:
        on_hello(worker, now);
        break;
      case Arrival::Kind::result:
        finish_job(worker, std::move(*arrival), now);
        break;
      case Arrival::Kind::violation:
        return kill_for_violation(worker, arrival->violation);
    }
    if (worker.life.untrusted()) return;  // what it sent ahead of the record just read gave it away
  }
}

void Supervisor::on_hello(WorkerProcess& worker, Clock::time_point now) {
  worker.life.became_ready();
  worker.timers.start_deadline.reset();
  worker.ready_at = worker.idle_since = now;
  worker.memory.read(now, false);
  const RecyclePolicy& policy = options_.recycle;
  const std::optional<std::uint64_t>& memory = worker.memory.current();
  if (policy.memory_soft_limit && memory && *memory > policy.memory_soft_limit) {
    // Replacing it would give a worker just as big: keep it, say so once.
    worker.memory.waive_soft_limit();
    if (!std::exchange(reported_above_soft_limit_, true)) {
      reporter_.emit(
          worker_event(EventType::above_soft_limit_at_start, worker,
                       fmt::format("worker {} (pid {}) uses {} right after start-up, over "
                                   "memory_soft_limit ({}); such workers are kept rather than "
                                   "recycled after every job; raise the limit",
                                   worker.id, worker.pid, format_bytes(*memory),
                                   format_bytes(policy.memory_soft_limit))),
          LogLevel::warning);
    }
  }
  if (intake_.state().degraded) set_degraded(false, "a worker started cleanly");
  next_spawn_at_ = {};
  PoolEvent event =
      worker_event(EventType::ready, worker,
                   fmt::format("worker {} (pid {}) ready in {} ms", worker.id, worker.pid,
                               duration_cast<milliseconds>(now - worker.spawned_at).count()));
  event.reason = worker.predecessor_reason;
  reporter_.emit(std::move(event), LogLevel::debug);
  apply_policy(worker, now);
}

void Supervisor::finish_job(WorkerProcess& worker, Arrival result, Clock::time_point now) {
  // A stopped worker that was stopped before it read this job finishes only this one: what it has
  // not read behind it goes back to the queue.
  if (worker.life.stop_sent() && !worker.prefetched.empty()) take_back_unstarted(worker);
  reserve_outcomes(1);  // before the job leaves its worker: its outcome has a place to go
  std::unique_ptr<Job> job = std::move(worker.job);
  ++worker.jobs_done;
  Clock::duration took = now - worker.job_started_at;
  worker.typical_job_time =
      worker.typical_job_time ? (*worker.typical_job_time * 3 + took) / 4 : took;
  if (!worker.prefetched.empty()) {
    // It goes straight on with the next job it was sent; memory is read by the periodic sample.
    worker.job = std::move(worker.prefetched.front());
    worker.prefetched.pop_front();
    worker.link.request_sent_ahead(*worker.job);
    begin_job(worker, now, false);
  } else {
    worker.timers.job_deadline.reset();
    worker.idle_since = now;
    worker.memory.job_ended(job->name);
    // The busy worker's sample, if due first, becomes its reading once idle.
    const WorkerTimers::Time sample_at = std::exchange(worker.timers.sample_at, std::nullopt);
    if (worker.memory.reading_due(now, options_.recycle.memory_read_min_interval,
                                  worker.life.leaving().has_value())) {
      worker.memory.read(now, false);
      attribute_memory(worker);
    } else {
      worker.timers.idle_reading_at =
          sample_at.value_or(now + options_.recycle.memory_sample_interval);
    }
  }
  worker.memory.take_baseline_if_due(worker.jobs_done, options_.recycle.baseline_after_jobs, now);
  bool ok = result.status == ResultStatus::ok && !result.receive_failure;
  try {
    job_stats_.record(job->name, ok, took);
  } catch (const std::bad_alloc&) {
    // The figures miss one job; the job keeps its outcome.
  }
  note_job_completed();
  if (job->cancel) {
    // Cancelled after it started: what it returned arrived too late to count.
    unsigned attempts = job->attempts;
    queue_outcome(*job, job_failure(ErrorKind::cancelled,
                                    fmt::format("job '{}' was cancelled while it ran; what it "
                                                "returned was discarded",
                                                job->name),
                                    attempts));
  } else if (result.receive_failure) {
    JobError error;
    error.kind = ErrorKind::payload_too_large;
    error.message = std::move(*result.receive_failure);
    error.attempts = job->attempts;
    fail_job(worker, std::move(job), std::move(error), LogLevel::warning);
  } else if (ok) {
    queue_outcome(*job, JobResult::success(std::move(result.bytes)));
  } else {
    ErrorKind kind = ErrorKind::handler_error;
    switch (result.status) {
      case ResultStatus::unknown_job:
        kind = ErrorKind::unknown_job;
        break;
      case ResultStatus::codec_error:
        kind = ErrorKind::codec_error;
        break;
      case ResultStatus::result_too_large:
        kind = ErrorKind::payload_too_large;
        break;
      default:
        break;
    }
    JobError error;
    error.kind = kind;
    error.message.assign(reinterpret_cast<const char*>(result.bytes.data()), result.bytes.size());
    error.attempts = job->attempts;
    fail_job(worker, std::move(job), std::move(error), LogLevel::debug);
  }
  if (worker.life.leaving()) {
    release_retired(worker, now);  // its last job is done
  } else {
    apply_policy(worker, now);
  }
}

void Supervisor::read_output(WorkerProcess& worker, bool until_eof) {
  if (worker.link.output() < 0) return;
  WorkerLink::OutputRead read = worker.link.read_output(until_eof);
  for (const std::string& line : read.lines)
    reporter_.log(LogLevel::info, fmt::format("worker {}: {}", worker.pid, line));
  if (read.ended) {
    // Stop watching, or a closed pipe would wake the loop for ever.
    poller_.remove(worker.link.output());
    worker.link.close_output();
  }
}

}  // namespace procpool::detail
