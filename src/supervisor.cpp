#include "supervisor.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>

#include "channel/layout.hpp"
#include "worker_args.hpp"

namespace procpool::detail {

using std::chrono::duration_cast;
using std::chrono::milliseconds;

/// One worker process as the supervisor sees it. Touched only by the supervisor thread (and read
/// by stats() under state_mutex_).
struct WorkerProcess {
  std::uint64_t id = 0;
  int pid = 0;
  platform::UniqueFd pidfd, doorbell, output;
  Segment segment;
  RingWriter requests;
  RingReader responses;
  std::uint64_t max_body = 0;

  WorkerState state = WorkerState::starting;
  bool ready = false;
  Clock::time_point spawned_at, idle_since, job_started_at;
  std::optional<Clock::time_point> start_deadline, job_deadline, kill_at;

  // The job it runs, and how far its request has been sent.
  std::unique_ptr<Job> job;
  bool job_start_sent = false;
  std::uint64_t sent = 0;
  bool waiting_for_space = false;

  // The result being received.
  bool receiving = false;
  ResultStatus result_status = ResultStatus::ok;
  std::uint64_t expected = 0;
  Bytes received;

  StopReason stop_reason = StopReason::none;
  std::string stop_detail;

  std::deque<std::string> stderr_tail;
  std::string partial_line;

  std::uint64_t jobs_done = 0;
  std::uint64_t rss = 0, peak_rss = 0;
};

namespace {

enum KeyKind : std::uint64_t { wake_key = 0, doorbell_key = 1, exit_key = 2, output_key = 3 };

std::uint64_t key_for(std::uint64_t worker_id, KeyKind kind) {
  return worker_id * 4 + kind;
}

template <class T>
std::span<const std::byte> as_bytes(const T& value) {
  return {reinterpret_cast<const std::byte*>(&value), sizeof value};
}

JobResult failure(ErrorKind kind, std::string message, unsigned attempts = 0) {
  JobError error;
  error.kind = kind;
  error.message = std::move(message);
  error.attempts = attempts;
  return JobResult::failure(std::move(error));
}

std::string describe_exit(const platform::ExitStatus& status) {
  if (status.signal) return "was killed by " + platform::signal_name(*status.signal);
  if (status.exit_code) return fmt::format("exited with code {}", *status.exit_code);
  return "exited (status unknown: SIGCHLD is ignored in this process)";
}

std::string join_lines(const std::deque<std::string>& lines) {
  std::string out;
  for (const auto& line : lines) {
    out += line;
    out += '\n';
  }
  return out;
}

constexpr std::size_t max_line_bytes = 4096;

}  // namespace

Supervisor::Supervisor(PoolOptions options)
    : options_(std::move(options)),
      host_pid_(platform::current_pid()),
      wake_fd_(platform::make_eventfd()) {
  if (options_.worker_command.empty()) {
    executable_ = platform::self_executable_path();
  } else {
    executable_ = options_.worker_command.front();
    base_arguments_.assign(options_.worker_command.begin() + 1, options_.worker_command.end());
  }
  if (std::size_t removed = Segment::remove_stale()) {
    log(LogLevel::info,
        fmt::format("removed {} shared-memory segment(s) left by dead pools", removed));
  }
  poller_.add(wake_fd_.get(), wake_key);
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

JobId Supervisor::submit(std::string_view name, Bytes payload, const SubmitOptions& options,
                         OutcomeSink sink) {
  JobId id = next_job_id_.fetch_add(1, std::memory_order_relaxed);
  submitted_.fetch_add(1, std::memory_order_relaxed);
  auto reject = [&](ErrorKind kind, std::string message) {
    JobResult result = failure(kind, std::move(message));
    count(result);
    complete_now(std::move(sink), std::move(result));
    return id;
  };
  if (name.empty()) return reject(ErrorKind::invalid_request, "the job name is empty");
  if (name.size() > max_job_name_bytes) {
    return reject(
        ErrorKind::invalid_request,
        fmt::format("the job name is {} bytes; the limit is {}", name.size(), max_job_name_bytes));
  }
  if (options.max_attempts == 0 || options.max_attempts > 100) {
    return reject(
        ErrorKind::invalid_request,
        fmt::format("SubmitOptions::max_attempts is {}; allowed: 1..100", options.max_attempts));
  }
  if (options.max_attempts > 1 && !options.idempotent) {
    return reject(ErrorKind::invalid_request,
                  "SubmitOptions::max_attempts > 1 requires idempotent = true: only jobs that are "
                  "safe to run twice are retried");
  }
  if (options.timeout.count() < 0) {
    return reject(ErrorKind::invalid_request,
                  "SubmitOptions::timeout must be 0 (pool default) or positive");
  }
  if (payload.size() > options_.max_payload_bytes) {
    return reject(ErrorKind::payload_too_large,
                  fmt::format("the payload is {} bytes, over PoolOptions::max_payload_bytes ({})",
                              payload.size(), options_.max_payload_bytes));
  }

  auto job = std::make_unique<Job>();
  job->id = id;
  job->name = std::string(name);
  job->payload = std::move(payload);
  job->options = options;
  job->timeout = options.timeout.count() > 0 ? options.timeout : options_.job_timeout;

  std::unique_lock lock(queue_mutex_);
  for (;;) {
    if (stopping_) {
      lock.unlock();
      return reject(ErrorKind::shutting_down, "the pool is shutting down");
    }
    if (degraded_) {
      lock.unlock();
      return reject(ErrorKind::pool_degraded,
                    "the pool is degraded: its workers keep failing to start (see the log); it "
                    "recovers when one starts cleanly");
    }
    if (queue_.size() < options_.queue_capacity) break;
    if (options_.when_queue_full == QueueFullPolicy::reject ||
        std::this_thread::get_id() == supervisor_thread_id_.load()) {
      lock.unlock();
      return reject(ErrorKind::queue_full,
                    fmt::format("the queue is full ({} jobs, PoolOptions::queue_capacity)",
                                options_.queue_capacity));
    }
    queue_space_.wait(lock);
  }
  job->sink = std::move(sink);
  queue_.push_back(std::move(job));
  bool must_wake = supervisor_sleeping_;
  supervisor_sleeping_ = false;
  lock.unlock();
  if (must_wake) wake();
  return id;
}

bool Supervisor::cancel(JobId id) {
  std::unique_ptr<Job> job;
  {
    std::lock_guard lock(queue_mutex_);
    auto it =
        std::find_if(queue_.begin(), queue_.end(), [&](const auto& j) { return j->id == id; });
    if (it == queue_.end()) return false;
    job = std::move(*it);
    queue_.erase(it);
  }
  queue_space_.notify_one();
  JobResult result = failure(ErrorKind::cancelled, "cancelled before it started", job->attempts);
  count(result);
  complete_now(std::move(job->sink), std::move(result));
  return true;
}

PoolStats Supervisor::stats() const {
  PoolStats stats;
  auto now = Clock::now();
  std::lock_guard state_lock(state_mutex_);
  {
    std::lock_guard queue_lock(queue_mutex_);
    stats.queued = queue_.size();
    stats.health =
        stopping_ ? PoolHealth::stopped : (degraded_ ? PoolHealth::degraded : PoolHealth::healthy);
  }
  for (const auto& [id, w] : workers_) {
    WorkerStats ws;
    ws.id = id;
    ws.pid = w->pid;
    ws.state = w->state;
    ws.jobs_done = w->jobs_done;
    ws.age = duration_cast<milliseconds>(now - w->spawned_at);
    ws.rss_bytes = w->rss;
    ws.peak_rss_bytes = w->peak_rss;
    if (w->job) {
      ++stats.in_flight;
      ws.current_job = w->job->name;
      ws.current_job_running_for = duration_cast<milliseconds>(now - w->job_started_at);
    } else if (w->ready) {
      ws.idle_for = duration_cast<milliseconds>(now - w->idle_since);
    }
    stats.workers.push_back(std::move(ws));
  }
  stats.submitted = submitted_.load();
  stats.succeeded = succeeded_.load();
  for (std::size_t i = 0; i < error_kind_count; ++i) {
    stats.failed_by_kind[i] = failed_by_kind_[i].load();
    stats.failed += stats.failed_by_kind[i];
  }
  stats.retries = retries_.load();
  stats.workers_started = workers_started_;
  stats.workers_exited = workers_exited_;
  stats.start_failures = start_failures_;
  stats.tracked_jobs = stats.queued + stats.in_flight + outcomes_.size();
  return stats;
}

void Supervisor::shutdown(milliseconds drain) {
  std::lock_guard guard(shutdown_mutex_);
  if (!thread_.joinable()) return;
  if (std::this_thread::get_id() == supervisor_thread_id_.load()) {
    log(LogLevel::error, "Pool::shutdown called from a completion callback; ignored");
    return;
  }
  {
    std::lock_guard lock(queue_mutex_);
    stopping_ = true;
    shutdown_drain_ = std::max(drain, milliseconds{0});
  }
  queue_space_.notify_all();
  wake();
  thread_.join();
}

void Supervisor::complete_now(OutcomeSink sink, JobResult result) noexcept {
  if (auto* promise = std::get_if<std::promise<JobResult>>(&sink)) {
    try {
      promise->set_value(std::move(result));
    } catch (...) {
      // Only fails if the promise was already satisfied, which the ownership rules exclude.
    }
    return;
  }
  auto& callback = std::get<Completion>(sink);
  if (!callback) return;
  try {
    callback(std::move(result));
  } catch (const std::exception& e) {
    log(LogLevel::error, fmt::format("a completion callback threw: {}", e.what()));
  } catch (...) {
    log(LogLevel::error, "a completion callback threw a non-std::exception");
  }
}

void Supervisor::count(const JobResult& result) noexcept {
  if (result.ok()) {
    succeeded_.fetch_add(1, std::memory_order_relaxed);
  } else {
    failed_by_kind_[static_cast<std::size_t>(result.error().kind)].fetch_add(
        1, std::memory_order_relaxed);
  }
}

void Supervisor::log(LogLevel level, const std::string& line) const noexcept {
  try {
    if (options_.log) {
      options_.log(level, line);
    } else if (level != LogLevel::debug) {
      std::fprintf(stderr, "procpool: %s\n", line.c_str());
    }
  } catch (...) {
    // A log sink that throws loses its line, nothing else.
  }
}

void Supervisor::wake() noexcept {
  platform::eventfd_notify(wake_fd_.get());
}

// ---- Supervisor thread -----------------------------------------------------------------------

void Supervisor::run() noexcept {
  supervisor_thread_id_.store(std::this_thread::get_id());
  try {
    loop();
  } catch (const std::exception& e) {
    log(LogLevel::error, fmt::format("supervisor failed: {}; stopping the pool", e.what()));
    emergency_stop();
  } catch (...) {
    log(LogLevel::error, "supervisor failed; stopping the pool");
    emergency_stop();
  }
}

void Supervisor::loop() {
  std::vector<std::uint64_t> ready;
  for (;;) {
    std::optional<Clock::duration> timeout;
    std::vector<Outcome> outcomes;
    bool done = false;
    {
      std::lock_guard lock(state_mutex_);
      end_sleep();
      auto now = Clock::now();
      for (std::uint64_t key : ready)
        on_ready_key(key, now);
      ready.clear();
      timeout = step(now);
      done = final_stop_ && workers_.empty();
      if (!done && (!timeout || *timeout > Clock::duration::zero()) && !prepare_sleep()) {
        timeout = Clock::duration::zero();
      }
      outcomes.swap(outcomes_);
    }
    for (auto& outcome : outcomes)
      complete_now(std::move(outcome.sink), std::move(outcome.result));
    if (done) return;
    std::optional<milliseconds> wait;
    if (timeout) wait = std::chrono::ceil<milliseconds>(*timeout);
    poller_.wait(wait, ready);
  }
}

void Supervisor::on_ready_key(std::uint64_t key, Clock::time_point now) {
  if (key == wake_key) {
    platform::eventfd_drain(wake_fd_.get());
    return;
  }
  auto it = workers_.find(key / 4);
  if (it == workers_.end()) return;  // already gone; a stale event from the same batch
  WorkerProcess& worker = *it->second;
  switch (key % 4) {
    case doorbell_key:
      platform::eventfd_drain(worker.doorbell.get());
      break;  // the rings are polled in step()
    case output_key:
      read_output(worker, false);
      break;
    case exit_key:
      on_exit(worker, now);
      break;
  }
}

std::optional<Clock::duration> Supervisor::step(Clock::time_point now) {
  {
    std::lock_guard lock(queue_mutex_);
    if (shutdown_drain_ && !drain_deadline_) drain_deadline_ = now + *shutdown_drain_;
  }
  for (auto& [id, worker] : workers_) {
    if (worker->stop_reason == StopReason::protocol_violation) continue;
    read_responses(*worker, now);
    if (worker->job && worker->waiting_for_space) send_request(*worker);
  }
  if (drain_deadline_ && !final_stop_) {
    bool busy = std::any_of(workers_.begin(), workers_.end(),
                            [](const auto& w) { return w.second->job != nullptr; });
    bool queued;
    {
      std::lock_guard lock(queue_mutex_);
      queued = !queue_.empty();
    }
    if ((!busy && !queued) || now >= *drain_deadline_) begin_final_stop(now);
  }
  if (!final_stop_) {
    spawn_workers(now);
    dispatch(now);
  }
  auto next = check_timers(now);
  if (!next) return std::nullopt;
  return std::max(Clock::duration::zero(), *next - now);
}

void Supervisor::spawn_workers(Clock::time_point now) {
  auto live =
      static_cast<std::size_t>(std::count_if(workers_.begin(), workers_.end(), [](const auto& w) {
        return w.second->stop_reason == StopReason::none;
      }));
  while (live < options_.workers && now >= next_spawn_at_) {
    try {
      spawn_one(now);
      ++live;
    } catch (const std::exception& e) {
      note_start_failure(now, e.what());
      return;
    }
  }
}

void Supervisor::spawn_one(Clock::time_point now) {
  auto worker = std::make_unique<WorkerProcess>();
  worker->id = next_worker_id_++;
  worker->segment = Segment::create(options_.ring_bytes, options_.max_payload_bytes,
                                    options_.max_result_bytes, host_pid_);
  SegmentHeader& header = worker->segment.header();
  worker->requests =
      RingWriter(&header.requests, worker->segment.request_data(), options_.ring_bytes);
  worker->responses =
      RingReader(&header.responses, worker->segment.response_data(), options_.ring_bytes);
  worker->max_body = max_record_body(options_.ring_bytes);
  worker->doorbell = platform::make_eventfd();
  platform::Pipe output = platform::make_pipe();

  platform::SpawnRequest request;
  request.executable = executable_;
  request.arguments = base_arguments_;
  request.arguments.insert(request.arguments.end(),
                           {worker_flag, worker->segment.name(), std::to_string(host_pid_)});
  request.output_fd = output.write_end.get();
  request.doorbell_fd = worker->doorbell.get();
  platform::SpawnedProcess spawned = platform::spawn(request);
  output.write_end
      .reset();  // the child has its own copy; EOF comes when it (and its children) exit

  worker->pid = spawned.pid;
  worker->pidfd = std::move(spawned.pidfd);
  worker->output = std::move(output.read_end);
  worker->spawned_at = now;
  worker->start_deadline = now + options_.start_timeout;
  try {
    poller_.add(worker->doorbell.get(), key_for(worker->id, doorbell_key));
    poller_.add(worker->pidfd.get(), key_for(worker->id, exit_key));
    poller_.add(worker->output.get(), key_for(worker->id, output_key));
  } catch (...) {
    platform::kill_process(worker->pidfd.get());
    poller_.remove(worker->doorbell.get());
    poller_.remove(worker->pidfd.get());
    platform::reap_blocking(worker->pid);
    throw;
  }
  ++workers_started_;
  log(LogLevel::debug, fmt::format("worker {} spawned (pid {})", worker->id, worker->pid));
  workers_.emplace(worker->id, std::move(worker));
}

void Supervisor::dispatch(Clock::time_point now) {
  bool popped = false;
  for (auto& [id, worker] : workers_) {
    WorkerProcess& w = *worker;
    if (w.state != WorkerState::idle || w.stop_reason != StopReason::none || w.job) continue;
    std::unique_ptr<Job> job;
    {
      std::lock_guard lock(queue_mutex_);
      if (queue_.empty()) break;
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    popped = true;
    ++job->attempts;
    w.job = std::move(job);
    w.state = WorkerState::busy;
    w.job_start_sent = false;
    w.sent = 0;
    w.job_started_at = now;
    w.job_deadline.reset();
    if (w.job->timeout.count() > 0) w.job_deadline = now + w.job->timeout;
    send_request(w);
  }
  if (popped) queue_space_.notify_all();
}

void Supervisor::send_request(WorkerProcess& w) {
  Job& job = *w.job;
  if (!w.requests.free_bytes()) {
    violation(w, "its read position in the request ring is impossible", Clock::now());
    return;
  }
  w.waiting_for_space = true;
  if (!w.job_start_sent) {
    JobStartBody body;
    body.payload_bytes = job.payload.size();
    body.timeout_ms = job.timeout.count();
    body.attempt = job.attempts;
    body.name_bytes = static_cast<std::uint32_t>(job.name.size());
    auto name = std::as_bytes(std::span(job.name.data(), job.name.size()));
    w.job_start_sent = w.requests.append(RecordType::job_start, job.id, as_bytes(body), name);
  }
  if (w.job_start_sent) {
    std::span<const std::byte> payload(job.payload);
    while (w.sent < payload.size()) {
      std::uint64_t n = std::min<std::uint64_t>(payload.size() - w.sent, w.max_body);
      if (!w.requests.append(RecordType::job_data, job.id, payload.subspan(w.sent, n))) break;
      w.sent += n;
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
      violation(
          w,
          "its response ring is corrupt (impossible position, partial record or oversized length)",
          now);
      return;
    }
    if (!is_response_record(record.header.type)) {
      violation(w, fmt::format("it sent an unknown record type {}", record.header.type), now);
      return;
    }
    handle_record(w, record, now);
    if (w.stop_reason == StopReason::protocol_violation) return;
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
        return violation(w, "it sent a second or malformed hello", now);
      }
      w.responses.copy_body(record, 0, &hello, sizeof hello);
      if (hello.version != protocol_version) {
        return violation(w,
                         fmt::format("it speaks protocol version {}, the host {}", hello.version,
                                     protocol_version),
                         now);
      }
      w.ready = true;
      w.segment.unlink();  // both sides have it mapped: nothing needs the name any more
      w.start_deadline.reset();
      w.idle_since = now;
      if (w.stop_reason == StopReason::none) w.state = WorkerState::idle;
      if (auto rss = platform::read_rss_bytes(w.pid)) w.rss = w.peak_rss = *rss;
      consecutive_start_failures_ = 0;
      next_spawn_at_ = {};
      bool healed = false;
      {
        std::lock_guard lock(queue_mutex_);
        healed = std::exchange(degraded_, false);
      }
      if (healed) log(LogLevel::info, "a worker started cleanly; the pool is healthy again");
      log(LogLevel::debug, fmt::format("worker {} (pid {}) ready in {} ms", w.id, w.pid,
                                       duration_cast<milliseconds>(now - w.spawned_at).count()));
      return;
    }
    case RecordType::result_start: {
      ResultStartBody body;
      if (!w.job || w.receiving || header.job_id != w.job->id || header.length != sizeof body ||
          !w.job_start_sent || w.sent != w.job->payload.size()) {
        return violation(
            w, fmt::format("it sent a result for job {} that it was not running", header.job_id),
            now);
      }
      w.responses.copy_body(record, 0, &body, sizeof body);
      if (body.status > static_cast<std::uint32_t>(ResultStatus::result_too_large)) {
        return violation(w, fmt::format("it sent an unknown result status {}", body.status), now);
      }
      auto status = static_cast<ResultStatus>(body.status);
      std::uint64_t limit =
          status == ResultStatus::ok ? options_.max_result_bytes : max_error_message_bytes;
      if (body.bytes > limit) {
        return violation(w,
                         fmt::format("it announced a result of {} bytes, over the limit of {}",
                                     body.bytes, limit),
                         now);
      }
      w.receiving = true;
      w.result_status = status;
      w.expected = body.bytes;
      w.received.clear();
      w.received.reserve(body.bytes);
      if (w.expected == 0) finish_job(w, now);
      return;
    }
    case RecordType::result_data: {
      if (!w.receiving || header.job_id != w.job->id ||
          header.length > w.expected - w.received.size()) {
        return violation(w, "it sent result bytes that do not belong to the current result", now);
      }
      std::size_t at = w.received.size();
      w.received.resize(at + header.length);
      w.responses.copy_body(record, 0, w.received.data() + at, header.length);
      if (w.received.size() == w.expected) finish_job(w, now);
      return;
    }
    default:
      return violation(w, "it sent a host-to-worker record", now);
  }
}

void Supervisor::finish_job(WorkerProcess& w, Clock::time_point now) {
  std::unique_ptr<Job> job = std::move(w.job);
  Bytes bytes = std::move(w.received);
  w.received = Bytes();
  w.receiving = false;
  w.job_deadline.reset();
  w.waiting_for_space = false;
  ++w.jobs_done;
  w.idle_since = now;
  if (w.stop_reason == StopReason::none) w.state = WorkerState::idle;
  if (auto rss = platform::read_rss_bytes(w.pid)) {
    w.rss = *rss;
    w.peak_rss = std::max(w.peak_rss, *rss);
  }
  if (w.result_status == ResultStatus::ok) {
    complete(std::move(job), JobResult::success(std::move(bytes)));
    return;
  }
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
  unsigned attempts = job->attempts;
  std::string message(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  complete(std::move(job), failure(kind, std::move(message), attempts));
}

void Supervisor::complete(std::unique_ptr<Job> job, JobResult result) {
  count(result);
  outcomes_.push_back(Outcome{std::move(job->sink), std::move(result)});
}

void Supervisor::read_output(WorkerProcess& w, bool until_eof) {
  if (!w.output) return;
  char buffer[4096];
  for (;;) {
    auto n = platform::read_some(w.output.get(), buffer, sizeof buffer);
    if (!n) {
      if (!until_eof) return;  // nothing more for now
      break;                   // the worker is gone; whatever a grandchild writes later is dropped
    }
    if (*n == 0) break;  // EOF
    for (std::size_t i = 0; i < *n; ++i) {
      if (buffer[i] != '\n' && w.partial_line.size() < max_line_bytes) {
        w.partial_line += buffer[i];
        continue;
      }
      if (buffer[i] != '\n') --i;  // over-long line: cut it here and keep the byte for the next
      log(LogLevel::info, fmt::format("worker {}: {}", w.pid, w.partial_line));
      if (options_.stderr_tail_lines > 0) {
        if (w.stderr_tail.size() == options_.stderr_tail_lines) w.stderr_tail.pop_front();
        w.stderr_tail.push_back(std::move(w.partial_line));
      }
      w.partial_line.clear();
    }
  }
  // End of output (or of the worker): stop watching, or a closed pipe would wake us forever.
  if (!w.partial_line.empty()) {
    log(LogLevel::info, fmt::format("worker {}: {}", w.pid, w.partial_line));
    if (options_.stderr_tail_lines > 0) {
      if (w.stderr_tail.size() == options_.stderr_tail_lines) w.stderr_tail.pop_front();
      w.stderr_tail.push_back(std::move(w.partial_line));
    }
    w.partial_line.clear();
  }
  poller_.remove(w.output.get());
  w.output.reset();
}

void Supervisor::on_exit(WorkerProcess& w, Clock::time_point now) {
  std::optional<platform::ExitStatus> status = platform::try_reap(w.pid);
  if (!status) return;
  read_output(w, true);
  if (w.stop_reason != StopReason::protocol_violation) read_responses(w, now);
  std::string how = describe_exit(*status);
  if (w.job) {
    std::unique_ptr<Job> job = std::move(w.job);
    ErrorKind kind = ErrorKind::worker_crashed;
    std::string message;
    switch (w.stop_reason) {
      case StopReason::job_timeout:
        kind = ErrorKind::timeout;
        message = fmt::format(
            "job '{}' ran longer than its timeout of {} ms; its worker (pid {}) was stopped and {}",
            job->name, job->timeout.count(), w.pid, how);
        break;
      case StopReason::protocol_violation:
        kind = ErrorKind::protocol_violation;
        message =
            fmt::format("worker (pid {}) broke the protocol while running '{}': {}; it was killed",
                        w.pid, job->name, w.stop_detail);
        break;
      case StopReason::shutdown:
        kind = ErrorKind::shutting_down;
        message = fmt::format("the pool shut down while '{}' was running; its worker (pid {}) {}",
                              job->name, w.pid, how);
        break;
      case StopReason::none:
      case StopReason::start_timeout:
        message = fmt::format("worker (pid {}) {} while running '{}'", w.pid, how, job->name);
        break;
    }
    bool retryable = kind == ErrorKind::worker_crashed || kind == ErrorKind::timeout ||
                     kind == ErrorKind::memory_limit;
    if (retryable && job->options.idempotent && job->attempts < job->options.max_attempts &&
        !final_stop_) {
      log(LogLevel::warning, fmt::format("{}; retrying (attempt {} of {})", message,
                                         job->attempts + 1, job->options.max_attempts));
      retries_.fetch_add(1, std::memory_order_relaxed);
      std::lock_guard lock(queue_mutex_);
      queue_.push_front(std::move(job));
    } else {
      JobError error;
      error.kind = kind;
      error.message = std::move(message);
      error.exit_code = status->exit_code;
      error.signal = status->signal;
      error.worker_stderr = join_lines(w.stderr_tail);
      error.attempts = job->attempts;
      complete(std::move(job), JobResult::failure(std::move(error)));
    }
  }
  ++workers_exited_;
  if (!w.ready && w.stop_reason != StopReason::shutdown) {
    std::string why =
        w.stop_reason == StopReason::start_timeout
            ? fmt::format("did not report ready within {} ms", options_.start_timeout.count())
            : how;
    std::string tail = join_lines(w.stderr_tail);
    note_start_failure(now, fmt::format("worker (pid {}) {} before it was ready{}{}", w.pid, why,
                                        tail.empty() ? "" : "; its stderr:\n", tail));
  } else {
    log(w.stop_reason == StopReason::none ? LogLevel::warning : LogLevel::debug,
        fmt::format("worker {} (pid {}) {} after {} job(s)", w.id, w.pid, how, w.jobs_done));
  }
  poller_.remove(w.doorbell.get());
  poller_.remove(w.pidfd.get());
  if (w.output) poller_.remove(w.output.get());
  workers_.erase(w.id);  // `w` is gone from here on
}

void Supervisor::stop_worker(WorkerProcess& w, StopReason reason, Clock::time_point now,
                             std::string detail) {
  if (w.stop_reason != StopReason::none) return;
  w.stop_reason = reason;
  w.stop_detail = std::move(detail);
  w.state = WorkerState::stopping;
  w.waiting_for_space = false;
  bool graceful = reason == StopReason::job_timeout || reason == StopReason::shutdown;
  if (!graceful || !w.ready || options_.kill_grace.count() == 0) {
    platform::kill_process(w.pidfd.get());
    return;
  }
  if (reason == StopReason::shutdown && !w.job) {
    // Idle: ask it to leave through the ring; SIGKILL if it has not after the grace period.
    w.requests.append(RecordType::stop, 0, {});
    if (w.requests.publish()) platform::futex_wake_all(w.requests.wake_word());
  } else {
    platform::terminate_process(w.pidfd.get());
  }
  w.kill_at = now + options_.kill_grace;
}

void Supervisor::violation(WorkerProcess& w, const std::string& what, Clock::time_point now) {
  if (w.stop_reason == StopReason::protocol_violation) return;
  log(LogLevel::error,
      fmt::format("worker {} (pid {}) broke the protocol: {}; killing it", w.id, w.pid, what));
  // A violation overrides a gentler stop already under way: the worker is not to be trusted.
  w.stop_reason = StopReason::none;
  stop_worker(w, StopReason::protocol_violation, now, what);
}

void Supervisor::note_start_failure(Clock::time_point now, const std::string& why) {
  ++start_failures_;
  ++consecutive_start_failures_;
  unsigned shift = std::min(consecutive_start_failures_ - 1, 20u);
  auto backoff = std::min<milliseconds>(options_.start_backoff_initial * (1u << shift),
                                        options_.start_backoff_max);
  next_spawn_at_ = now + backoff;
  log(LogLevel::error, fmt::format("a worker failed to start ({} in a row): {}; next try in {} ms",
                                   consecutive_start_failures_, why, backoff.count()));
  if (consecutive_start_failures_ >= options_.max_consecutive_start_failures) {
    bool newly;
    {
      std::lock_guard lock(queue_mutex_);
      newly = !std::exchange(degraded_, true);
    }
    if (newly) {
      log(LogLevel::error,
          "the pool is degraded: jobs fail with pool_degraded until a worker starts");
      fail_queue(ErrorKind::pool_degraded,
                 fmt::format("the pool is degraded: {} workers in a row failed to start; last: {}",
                             consecutive_start_failures_, why));
    }
  }
}

void Supervisor::begin_final_stop(Clock::time_point now) {
  final_stop_ = true;
  fail_queue(ErrorKind::shutting_down, "the pool shut down before the job started");
  for (auto& [id, worker] : workers_)
    stop_worker(*worker, StopReason::shutdown, now);
}

std::optional<Clock::time_point> Supervisor::check_timers(Clock::time_point now) {
  std::optional<Clock::time_point> next;
  auto consider = [&](Clock::time_point t) {
    if (!next || t < *next) next = t;
  };
  for (auto& [id, worker] : workers_) {
    WorkerProcess& w = *worker;
    if (w.start_deadline && w.stop_reason == StopReason::none) {
      if (now >= *w.start_deadline) {
        stop_worker(w, StopReason::start_timeout, now);
      } else {
        consider(*w.start_deadline);
      }
    }
    if (w.job_deadline && w.job && w.stop_reason == StopReason::none) {
      if (now >= *w.job_deadline) {
        log(LogLevel::warning,
            fmt::format("job '{}' on worker {} (pid {}) timed out after {} ms; stopping the worker",
                        w.job->name, w.id, w.pid, w.job->timeout.count()));
        stop_worker(w, StopReason::job_timeout, now);
      } else {
        consider(*w.job_deadline);
      }
    }
    if (w.kill_at) {
      if (now >= *w.kill_at) {
        platform::kill_process(w.pidfd.get());
        w.kill_at.reset();
      } else {
        consider(*w.kill_at);
      }
    }
  }
  if (!final_stop_ && next_spawn_at_ > now) consider(next_spawn_at_);
  if (drain_deadline_ && !final_stop_) consider(*drain_deadline_);
  return next;
}

bool Supervisor::prepare_sleep() {
  for (auto& [id, worker] : workers_) {
    WorkerProcess& w = *worker;
    if (w.stop_reason == StopReason::protocol_violation) continue;
    w.responses.begin_wait();
    if (w.responses.has_data()) return false;
    if (w.waiting_for_space) {
      w.requests.begin_wait();
      auto space = w.requests.free_bytes();
      if (!space || *space >= RingWriter::record_bytes(w.max_body)) return false;
    }
  }
  std::lock_guard lock(queue_mutex_);
  if (!queue_.empty() && !final_stop_) {
    for (auto& [id, worker] : workers_) {
      if (worker->state == WorkerState::idle && !worker->job) return false;
    }
  }
  if (shutdown_drain_ && !drain_deadline_) return false;
  supervisor_sleeping_ = true;
  return true;
}

void Supervisor::end_sleep() {
  for (auto& [id, worker] : workers_) {
    worker->responses.end_wait();
    worker->requests.end_wait();
  }
  std::lock_guard lock(queue_mutex_);
  supervisor_sleeping_ = false;
}

void Supervisor::fail_queue(ErrorKind kind, const std::string& message) {
  std::deque<std::unique_ptr<Job>> jobs;
  {
    std::lock_guard lock(queue_mutex_);
    jobs.swap(queue_);
  }
  queue_space_.notify_all();
  for (auto& job : jobs) {
    unsigned attempts = job->attempts;
    complete(std::move(job), failure(kind, message, attempts));
  }
}

void Supervisor::emergency_stop() noexcept {
  try {
    {
      std::lock_guard lock(queue_mutex_);
      stopping_ = true;
    }
    std::lock_guard lock(state_mutex_);
    final_stop_ = true;
    fail_queue(ErrorKind::shutting_down, "the pool's supervisor failed");
    for (auto& [id, worker] : workers_) {
      platform::kill_process(worker->pidfd.get());
      platform::reap_blocking(worker->pid);
      if (worker->job) {
        unsigned attempts = worker->job->attempts;
        complete(std::move(worker->job),
                 failure(ErrorKind::shutting_down, "the pool's supervisor failed", attempts));
      }
    }
    workers_.clear();
  } catch (...) {
  }
  std::vector<Outcome> outcomes;
  outcomes.swap(outcomes_);
  for (auto& outcome : outcomes)
    complete_now(std::move(outcome.sink), std::move(outcome.result));
}

}  // namespace procpool::detail
