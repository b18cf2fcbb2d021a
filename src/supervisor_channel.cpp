// The supervisor's side of the channel: streaming requests into a worker's ring, reading and
// validating everything it writes back, and collecting its output lines.
#include <fmt/format.h>

#include <cstring>

#include "supervisor.hpp"

namespace procpool::detail {

using std::chrono::duration_cast;
using std::chrono::milliseconds;

namespace {

template <class T>
std::span<const std::byte> as_bytes(const T& value) {
  return {reinterpret_cast<const std::byte*>(&value), sizeof value};
}

// What one turn reads of a worker's output: a worker flooding its output shares the supervisor
// thread with the others (the poller reports the rest at once, level-triggered).
constexpr std::size_t output_bytes_per_turn = 64 << 10;
// What is read of a worker's output once it has died: a grandchild that escaped it may hold the
// pipe open and write for ever.
constexpr std::size_t output_bytes_after_exit = 1 << 20;

}  // namespace

bool Supervisor::append_job_start(RingWriter& ring, const Job& job) const {
  JobStartBody body;
  body.payload_bytes = job.payload.size();
  if (job.in_place) {
    body.flags = job_flag_in_place;
    if (options_.lent_buffers_after_job == LentBuffersAfterJob::kept_accessible) {
      body.flags |= job_flag_lent_kept_accessible;
    }
    body.payload_bytes = job.in_place->input.size();
    body.output_bytes = job.in_place->output.size();
  }
  body.timeout_ms = job.timeout.count();
  body.attempt = job.attempts;
  body.name_bytes = static_cast<std::uint32_t>(job.name.size());
  auto name = std::as_bytes(std::span(job.name.data(), job.name.size()));
  return ring.append(RecordType::job_start, job.id, as_bytes(body), name);
}

void Supervisor::send_request(WorkerProcess& w) {
  Job& job = *w.job;
  if (!w.requests.free_bytes()) {
    kill_for_violation(w, "its read position in the request ring is impossible");
    return;
  }
  w.waiting_for_space = true;
  if (!w.job_start_sent) {
    w.job_start_sent = append_job_start(w.requests, job);
    if (w.job_start_sent) job.start_number = ++w.job_starts_sent;
    // An in-place job's buffers go on the channel before its record is published, so they are
    // there when the worker reads the record: the input read-only, the output writable.
    if (w.job_start_sent && job.in_place) {
      int buffers[2] = {LentAccess::block(job.in_place->input).read_only.get(),
                        LentAccess::block(job.in_place->output).descriptor.get()};
      if (!platform::send_descriptors(w.channel.get(), buffers, 2)) {
        // It died (or closed its channel): its exit, handled as any crash, decides what becomes
        // of the job (a retry if it is idempotent).
        reporter_.log(
            LogLevel::warning,
            fmt::format("worker {} (pid {}) does not take an in-place job's buffers (it died or "
                        "closed its channel); killing it",
                        w.id, w.pid));
        w.kill();
        w.waiting_for_space = false;
        return;
      }
    }
  }
  if (w.job_start_sent) {
    std::span<const std::byte> payload(job.payload);
    const bool side_by_side = !shares_cpu(w);
    while (w.sent < payload.size()) {
      std::uint64_t n = std::min<std::uint64_t>(payload.size() - w.sent, w.max_body);
      if (!w.requests.append(RecordType::job_data, job.id, payload.subspan(w.sent, n))) break;
      w.sent += n;
      // A payload of several records: publish each, so the worker copies one out while the next
      // is copied in. Not to a worker on this thread's CPU: it would take the CPU at each record
      // (a context switch per record each way); it gets a ringful at once instead.
      if (side_by_side && w.sent < payload.size() && w.requests.publish()) {
        platform::futex_wake_all(w.requests.wake_word());
      }
    }
    w.waiting_for_space = w.sent < payload.size();
  }
  if (w.requests.publish()) platform::futex_wake_all(w.requests.wake_word());
}

void Supervisor::read_responses(WorkerProcess& w, Clock::time_point now) {
  for (;;) {
    RecordView record;
    ReadStatus status = w.responses.peek(record, w.max_body);
    if (status == ReadStatus::empty) break;
    if (status == ReadStatus::corrupt) {
      kill_for_violation(
          w,
          "its response ring is corrupt (impossible position, partial record or oversized length)");
      return;
    }
    if (!is_response_record(record.header.type)) {
      kill_for_violation(w, fmt::format("it sent an unknown record type {}", record.header.type));
      return;
    }
    handle_record(w, record, now);
    if (w.untrusted) return;
    w.responses.consume(record);
  }
  if (w.responses.release()) platform::futex_wake_all(w.responses.wake_word());
}

void Supervisor::handle_record(WorkerProcess& w, const RecordView& record, Clock::time_point now) {
  const RecordHeader& header = record.header;
  switch (static_cast<RecordType>(header.type)) {
    case RecordType::hello: {
      HelloBody hello;
      if (w.ready || header.length != sizeof hello) {
        return kill_for_violation(w, "it sent a second or malformed hello");
      }
      w.responses.copy_body(record, 0, &hello, sizeof hello);
      if (hello.version != protocol_version) {
        return kill_for_violation(w, fmt::format("it speaks protocol version {}, the host {}",
                                                 hello.version, protocol_version));
      }
      return on_hello(w, now);
    }
    case RecordType::result_start: {
      ResultStartBody body;
      if (!w.job || w.receiving || header.job_id != w.job->id || header.length != sizeof body ||
          !w.job_start_sent || w.sent != w.job->payload.size()) {
        return kill_for_violation(
            w, fmt::format("it sent a result for job {} that it was not running", header.job_id));
      }
      w.responses.copy_body(record, 0, &body, sizeof body);
      if (body.status > static_cast<std::uint32_t>(ResultStatus::result_too_large)) {
        return kill_for_violation(w,
                                  fmt::format("it sent an unknown result status {}", body.status));
      }
      auto status = static_cast<ResultStatus>(body.status);
      std::uint64_t limit =
          status == ResultStatus::ok ? options_.max_result_bytes : max_error_message_bytes;
      if (status == ResultStatus::ok && w.job->in_place && body.bytes != sizeof(std::uint64_t)) {
        return kill_for_violation(w,
                                  "it answered an in-place job with something other than a size");
      }
      if (body.bytes > limit) {
        return kill_for_violation(
            w, fmt::format("it announced a result of {} bytes, over the limit of {}", body.bytes,
                           limit));
      }
      w.receiving = true;
      w.result_status = status;
      w.expected = body.bytes;
      w.received.clear();
      w.discarded = 0;
      w.receive_failure.reset();
      // The buffer grows as the bytes arrive: a size announced is not memory to set aside.
      if (w.expected == 0) finish_job(w, now);
      return;
    }
    case RecordType::result_data: {
      if (!w.receiving || header.job_id != w.job->id ||
          header.length > w.expected - w.received.size() - w.discarded) {
        return kill_for_violation(w,
                                  "it sent result bytes that do not belong to the current result");
      }
      if (!w.receive_failure) receive_result_bytes(w, record);
      if (w.receive_failure) w.discarded += header.length;
      if (w.received.size() + w.discarded != w.expected) return;
      if (!w.receive_failure && w.result_status == ResultStatus::ok && w.job->in_place) {
        std::uint64_t written = 0;
        std::memcpy(&written, w.received.data(), sizeof written);
        if (written > w.job->in_place->output.size()) {
          return kill_for_violation(
              w, fmt::format("it says it wrote {} bytes into an output buffer of {}", written,
                             w.job->in_place->output.size()));
        }
      }
      finish_job(w, now);
      return;
    }
    default:
      return kill_for_violation(w, "it sent a host-to-worker record");
  }
}

void Supervisor::receive_result_bytes(WorkerProcess& w, const RecordView& record) {
  try {
    const std::uint64_t needed = w.received.size() + record.header.length;
    if (needed > w.received.capacity()) {
      // Geometric growth, never past the size announced.
      w.received.reserve(static_cast<std::size_t>(std::min<std::uint64_t>(
          w.expected, std::max<std::uint64_t>(needed, 2 * w.received.capacity()))));
    }
    w.responses.append_body(record, w.received);
  } catch (const std::bad_alloc&) {
    // This job's result does not fit in the host: it fails alone, its worker reads on, and the
    // rest of its result is read and dropped.
    const std::size_t had = w.received.size();
    Bytes().swap(w.received);
    w.discarded = had;
    w.receive_failure = fmt::format(
        "the host could not allocate memory for the job's result of {} bytes (received {} when "
        "an allocation failed); lower PoolOptions::max_result_bytes, return the result in parts "
        "or through a lent buffer, or give the host more memory",
        w.expected, had);
  }
}

void Supervisor::on_hello(WorkerProcess& w, Clock::time_point now) {
  w.ready = true;
  w.start_deadline.reset();
  w.ready_at = w.idle_since = now;
  if (!w.leaving) w.state = WorkerState::idle;
  sample_memory(w, now);
  const RecyclePolicy& policy = options_.recycle;
  if (policy.memory_soft_limit && w.memory && *w.memory > policy.memory_soft_limit) {
    // Replacing it would give a worker just as big: keep it, say so once.
    w.soft_limit_waived = true;
    if (!std::exchange(reported_above_soft_limit_, true)) {
      reporter_.emit(
          worker_event(EventType::above_soft_limit_at_start, w,
                       fmt::format("worker {} (pid {}) uses {} right after start-up, over "
                                   "memory_soft_limit ({}); such workers are kept rather than "
                                   "recycled after every job; raise the limit",
                                   w.id, w.pid, format_bytes(*w.memory),
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

void Supervisor::finish_job(WorkerProcess& w, Clock::time_point now) {
  // A stopped worker that was stopped before it read this job finishes only this one: what it has
  // not read behind it goes back to the queue.
  if (w.stop_sent && !w.prefetched.empty()) take_back_unstarted(w);
  reserve_outcomes(1);  // before the job leaves its worker: its outcome has a place to go
  std::unique_ptr<Job> job = std::move(w.job);
  Bytes bytes = std::move(w.received);
  w.received = Bytes();
  std::optional<std::string> receive_failure = std::move(w.receive_failure);
  w.receive_failure.reset();
  w.discarded = 0;
  w.receiving = false;
  w.waiting_for_space = false;
  ++w.jobs_done;
  Clock::duration took = now - w.job_started_at;
  w.typical_job_time = w.typical_job_time ? (*w.typical_job_time * 3 + took) / 4 : took;
  if (!w.prefetched.empty()) {
    // It goes straight on with the next job it was sent; memory is read by the periodic sample.
    w.job = std::move(w.prefetched.front());
    w.prefetched.pop_front();
    w.job_start_sent = true;
    w.sent = w.job->payload.size();
    begin_job(w, now, false);
  } else {
    w.job_deadline.reset();
    w.idle_since = now;
    if (!w.leaving) w.state = WorkerState::idle;
    if (w.memory_before_job) {
      w.unread_job_name = job->name;
      ++w.unread_jobs;
    }
    if (memory_reading_due(w, now)) {
      w.next_sample_at.reset();
      sample_memory(w, now);
      attribute_memory(w);
    } else if (!w.next_sample_at) {
      // Left idle, it is read by the periodic sample.
      w.next_sample_at = now + options_.recycle.memory_sample_interval;
    }
  }
  if (!w.baseline && w.memory && w.jobs_done >= options_.recycle.baseline_after_jobs) {
    w.baseline = w.memory;
    w.baseline_at = now;
    w.baseline_jobs = w.jobs_done;
  }
  bool ok = w.result_status == ResultStatus::ok && !receive_failure;
  try {
    job_stats_.record(job->name, ok, took);
  } catch (const std::bad_alloc&) {
    // The figures miss one job; the job keeps its outcome.
  }
  note_job_completed();
  if (receive_failure) {
    JobError error;
    error.kind = ErrorKind::payload_too_large;
    error.message = std::move(*receive_failure);
    error.attempts = job->attempts;
    fail_job(w, std::move(job), std::move(error), LogLevel::warning);
  } else if (ok) {
    queue_outcome(*job, JobResult::success(std::move(bytes)));
  } else {
    ErrorKind kind = ErrorKind::handler_error;
    switch (w.result_status) {
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
    error.message.assign(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    error.attempts = job->attempts;
    fail_job(w, std::move(job), std::move(error), LogLevel::debug);
  }
  if (w.leaving) {
    release_retired(w, now);  // its last job is done
  } else {
    apply_policy(w, now);
  }
}

void Supervisor::read_output(WorkerProcess& w, bool until_eof) {
  if (!w.output) return;
  char buffer[4096];
  std::vector<std::string> to_log;
  const Clock::time_point now = Clock::now();
  std::size_t budget = until_eof ? output_bytes_after_exit : output_bytes_per_turn;
  bool ended = false;
  while (!ended) {
    if (budget == 0) {
      ended = until_eof;  // a dead worker's pipe is read no further; a live one's next turn
      break;
    }
    auto n = platform::read_some(w.output.get(), buffer, std::min(sizeof buffer, budget));
    if (!n) {
      ended = until_eof;  // nothing more for now; after the worker, whatever comes is dropped
      w.output_lines.report_dropped(to_log);
      break;
    }
    if (*n == 0) {
      ended = true;  // EOF
      break;
    }
    budget -= *n;
    w.output_lines.take(std::string_view(buffer, *n), now, to_log);
  }
  if (ended) w.output_lines.finish(now, to_log);
  for (const std::string& line : to_log)
    reporter_.log(LogLevel::info, fmt::format("worker {}: {}", w.pid, line));
  if (ended) {
    // Stop watching, or a closed pipe would wake the loop for ever.
    poller_.remove(w.output.get());
    w.output.reset();
  }
}

}  // namespace procpool::detail
