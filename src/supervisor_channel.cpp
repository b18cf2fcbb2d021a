// The supervisor's side of the channel: what to do with what a worker's link (worker_link.hpp)
// sent, read and returned: its hello, each job's result, a broken protocol, its output lines.
#include <fmt/format.h>

#include "supervisor.hpp"

namespace procpool::detail {

using std::chrono::duration_cast;
using std::chrono::milliseconds;

void Supervisor::send_request(WorkerProcess& w) {
  // Not to a worker on this thread's CPU: it would take the CPU at each record (a context switch
  // per record each way); it gets a ringful at once instead.
  switch (w.link.send(*w.job, !shares_cpu(w))) {
    case WorkerLink::Sent::whole:
    case WorkerLink::Sent::waiting_for_space:
      return;
    case WorkerLink::Sent::ring_broken:
      return kill_for_violation(w, "its read position in the request ring is impossible");
    case WorkerLink::Sent::buffers_refused:
      // It died (or closed its channel): its exit, handled as any crash, decides what becomes of
      // the job (a retry if it is idempotent).
      reporter_.log(LogLevel::warning,
                    fmt::format("worker {} (pid {}) does not take an in-place job's buffers (it "
                                "died or closed its channel); killing it",
                                w.id, w.pid));
      w.kill();
      return;
  }
}

void Supervisor::read_responses(WorkerProcess& w, Clock::time_point now) {
  while (std::optional<Arrival> arrival = w.link.read(w.job.get())) {
    switch (arrival->kind) {
      case Arrival::Kind::hello:
        on_hello(w, now);
        break;
      case Arrival::Kind::result:
        finish_job(w, std::move(*arrival), now);
        break;
      case Arrival::Kind::violation:
        return kill_for_violation(w, arrival->violation);
    }
    if (w.life.untrusted()) return;  // what it sent ahead of the record just read gave it away
  }
}

void Supervisor::on_hello(WorkerProcess& w, Clock::time_point now) {
  w.life.became_ready();
  w.timers.start_deadline.reset();
  w.ready_at = w.idle_since = now;
  w.memory.read(now, false);
  const RecyclePolicy& policy = options_.recycle;
  const std::optional<std::uint64_t>& memory = w.memory.current();
  if (policy.memory_soft_limit && memory && *memory > policy.memory_soft_limit) {
    // Replacing it would give a worker just as big: keep it, say so once.
    w.memory.waive_soft_limit();
    if (!std::exchange(reported_above_soft_limit_, true)) {
      reporter_.emit(
          worker_event(EventType::above_soft_limit_at_start, w,
                       fmt::format("worker {} (pid {}) uses {} right after start-up, over "
                                   "memory_soft_limit ({}); such workers are kept rather than "
                                   "recycled after every job; raise the limit",
                                   w.id, w.pid, format_bytes(*memory),
                                   format_bytes(policy.memory_soft_limit))),
          LogLevel::warning);
    }
  }
  if (intake_.state().degraded) set_degraded(false, "a worker started cleanly");
  next_spawn_at_ = {};
  PoolEvent event =
      worker_event(EventType::ready, w,
                   fmt::format("worker {} (pid {}) ready in {} ms", w.id, w.pid,
                               duration_cast<milliseconds>(now - w.spawned_at).count()));
  event.reason = w.predecessor_reason;
  reporter_.emit(std::move(event), LogLevel::debug);
  apply_policy(w, now);
}

void Supervisor::finish_job(WorkerProcess& w, Arrival result, Clock::time_point now) {
  // A stopped worker that was stopped before it read this job finishes only this one: what it has
  // not read behind it goes back to the queue.
  if (w.life.stop_sent() && !w.prefetched.empty()) take_back_unstarted(w);
  reserve_outcomes(1);  // before the job leaves its worker: its outcome has a place to go
  std::unique_ptr<Job> job = std::move(w.job);
  ++w.jobs_done;
  Clock::duration took = now - w.job_started_at;
  w.typical_job_time = w.typical_job_time ? (*w.typical_job_time * 3 + took) / 4 : took;
  if (!w.prefetched.empty()) {
    // It goes straight on with the next job it was sent; memory is read by the periodic sample.
    w.job = std::move(w.prefetched.front());
    w.prefetched.pop_front();
    w.link.request_sent_ahead(*w.job);
    begin_job(w, now, false);
  } else {
    w.timers.job_deadline.reset();
    w.idle_since = now;
    w.memory.job_ended(job->name);
    // The busy worker's sample, if due first, becomes its reading once idle.
    const WorkerTimers::Time sample_at = std::exchange(w.timers.sample_at, std::nullopt);
    if (w.memory.reading_due(now, options_.recycle.memory_read_min_interval,
                             w.life.leaving().has_value())) {
      w.memory.read(now, false);
      attribute_memory(w);
    } else {
      w.timers.idle_reading_at = sample_at.value_or(now + options_.recycle.memory_sample_interval);
    }
  }
  w.memory.take_baseline_if_due(w.jobs_done, options_.recycle.baseline_after_jobs, now);
  bool ok = result.status == ResultStatus::ok && !result.receive_failure;
  try {
    job_stats_.record(job->name, ok, took);
  } catch (const std::bad_alloc&) {
    // The figures miss one job; the job keeps its outcome.
  }
  note_job_completed();
  if (result.receive_failure) {
    JobError error;
    error.kind = ErrorKind::payload_too_large;
    error.message = std::move(*result.receive_failure);
    error.attempts = job->attempts;
    fail_job(w, std::move(job), std::move(error), LogLevel::warning);
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
    fail_job(w, std::move(job), std::move(error), LogLevel::debug);
  }
  if (w.life.leaving()) {
    release_retired(w, now);  // its last job is done
  } else {
    apply_policy(w, now);
  }
}

void Supervisor::read_output(WorkerProcess& w, bool until_eof) {
  if (w.link.output() < 0) return;
  WorkerLink::OutputRead read = w.link.read_output(until_eof);
  for (const std::string& line : read.lines)
    reporter_.log(LogLevel::info, fmt::format("worker {}: {}", w.pid, line));
  if (read.ended) {
    // Stop watching, or a closed pipe would wake the loop for ever.
    poller_.remove(w.link.output());
    w.link.close_output();
  }
}

}  // namespace procpool::detail
