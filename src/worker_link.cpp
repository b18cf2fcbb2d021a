#include "worker_link.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

#include "lending.hpp"

namespace procpool::detail {

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

Arrival violation(std::string what) {
  Arrival arrival;
  arrival.kind = Arrival::Kind::violation;
  arrival.violation = std::move(what);
  return arrival;
}

}  // namespace

WorkerLink::WorkerLink(Segment segment, const LinkLimits& limits)
    : segment_(std::move(segment)),
      requests_(&segment_.header().requests, segment_.request_data(), limits.ring_bytes),
      responses_(&segment_.header().responses, segment_.response_data(), limits.ring_bytes),
      max_body_(max_record_body(limits.ring_bytes)),
      max_result_bytes_(limits.max_result_bytes),
      lent_kept_accessible_(limits.lent_kept_accessible),
      output_lines_(limits.tail_lines) {}

void WorkerLink::attach(platform::UniqueFd doorbell, platform::UniqueFd channel,
                        platform::UniqueFd output) {
  doorbell_ = std::move(doorbell);
  channel_ = std::move(channel);
  output_ = std::move(output);
}

// ---- Requests ---------------------------------------------------------------------------------

void WorkerLink::begin_request() noexcept {
  job_start_sent_ = false;
  payload_sent_ = 0;
}

void WorkerLink::request_sent_ahead(const Job& job) noexcept {
  job_start_sent_ = true;
  payload_sent_ = job.payload.size();
  waiting_for_space_ = false;
}

bool WorkerLink::request_complete(const Job& job) const noexcept {
  return job_start_sent_ && payload_sent_ == job.payload.size();
}

bool WorkerLink::append_job_start(const Job& job) {
  JobStartBody body;
  body.payload_bytes = job.payload.size();
  if (job.in_place) {
    body.flags = job_flag_in_place;
    if (lent_kept_accessible_) body.flags |= job_flag_lent_kept_accessible;
    body.payload_bytes = job.in_place->input.size();
    body.output_bytes = job.in_place->output.size();
  }
  // JobContext::deadline(): the earlier of this attempt's timeout and the job's deadline.
  std::chrono::milliseconds time_left = job.timeout;
  if (job.options.deadline) {
    const auto to_deadline = std::max(std::chrono::ceil<std::chrono::milliseconds>(
                                          *job.options.deadline - std::chrono::steady_clock::now()),
                                      std::chrono::milliseconds(1));
    if (time_left.count() == 0 || to_deadline < time_left) time_left = to_deadline;
  }
  body.timeout_ms = time_left.count();
  body.attempt = job.attempts;
  body.name_bytes = static_cast<std::uint32_t>(job.name.size());
  auto name = std::as_bytes(std::span(job.name.data(), job.name.size()));
  return requests_.append(RecordType::job_start, job.id, as_bytes(body), name);
}

WorkerLink::Sent WorkerLink::send(Job& job, bool records_one_by_one) {
  if (!requests_.free_bytes()) return Sent::ring_broken;
  waiting_for_space_ = true;
  if (!job_start_sent_) {
    job_start_sent_ = append_job_start(job);
    if (job_start_sent_) job.start_number = ++starts_sent_;
    // An in-place job's buffers go on the channel before its record is published, so they are
    // there when the worker reads the record: the input read-only, the output writable.
    if (job_start_sent_ && job.in_place) {
      int buffers[2] = {LentAccess::block(job.in_place->input).read_only.get(),
                        LentAccess::block(job.in_place->output).descriptor.get()};
      if (!platform::send_descriptors(channel_.get(), buffers, 2)) {
        waiting_for_space_ = false;
        return Sent::buffers_refused;
      }
    }
  }
  if (job_start_sent_) {
    std::span<const std::byte> payload(job.payload);
    while (payload_sent_ < payload.size()) {
      std::uint64_t n = std::min<std::uint64_t>(payload.size() - payload_sent_, max_body_);
      if (!requests_.append(RecordType::job_data, job.id, payload.subspan(payload_sent_, n))) {
        break;
      }
      payload_sent_ += n;
      if (records_one_by_one && payload_sent_ < payload.size() && requests_.publish()) {
        platform::futex_wake_all(requests_.wake_word());
      }
    }
    waiting_for_space_ = payload_sent_ < payload.size();
  }
  publish();
  return waiting_for_space_ ? Sent::waiting_for_space : Sent::whole;
}

std::uint64_t WorkerLink::bytes_ahead(const Job& job) noexcept {
  std::uint64_t head = RingWriter::record_bytes(sizeof(JobStartBody) + job.name.size());
  std::uint64_t body = job.payload.empty() ? 0 : RingWriter::record_bytes(job.payload.size());
  return head + body;
}

void WorkerLink::send_ahead(Job& job) {
  append_job_start(job);
  job.start_number = ++starts_sent_;
  if (!job.payload.empty()) requests_.append(RecordType::job_data, job.id, job.payload);
}

void WorkerLink::publish() noexcept {
  if (requests_.publish()) platform::futex_wake_all(requests_.wake_word());
}

void WorkerLink::send_stop() noexcept {
  requests_.append(RecordType::stop, 0, {});
  publish();
}

// ---- Responses --------------------------------------------------------------------------------

std::optional<Arrival> WorkerLink::read(const Job* current) {
  for (;;) {
    RecordView record;
    ReadStatus status = responses_.peek(record, max_body_);
    if (status == ReadStatus::empty) break;
    if (status == ReadStatus::corrupt) {
      return violation(
          "its response ring is corrupt (impossible position, partial record or oversized length)");
    }
    if (!is_response_record(record.header.type)) {
      return violation(fmt::format("it sent an unknown record type {}", record.header.type));
    }
    std::optional<Arrival> arrival = take(record, current);
    if (arrival && arrival->kind == Arrival::Kind::violation) return arrival;
    responses_.consume(record);
    if (arrival) return arrival;
  }
  if (responses_.release()) platform::futex_wake_all(responses_.wake_word());
  return std::nullopt;
}

std::optional<Arrival> WorkerLink::take(const RecordView& record, const Job* current) {
  const RecordHeader& header = record.header;
  switch (static_cast<RecordType>(header.type)) {
    case RecordType::hello: {
      HelloBody hello;
      if (hello_seen_ || header.length != sizeof hello) {
        return violation("it sent a second or malformed hello");
      }
      responses_.copy_body(record, 0, &hello, sizeof hello);
      if (hello.version != protocol_version) {
        return violation(fmt::format("it speaks protocol version {}, the host {}", hello.version,
                                     protocol_version));
      }
      hello_seen_ = true;
      return Arrival{};
    }
    case RecordType::result_start: {
      ResultStartBody body;
      if (!current || receiving_ || header.job_id != current->id || header.length != sizeof body ||
          !request_complete(*current)) {
        return violation(
            fmt::format("it sent a result for job {} that it was not running", header.job_id));
      }
      responses_.copy_body(record, 0, &body, sizeof body);
      if (body.status > static_cast<std::uint32_t>(ResultStatus::result_too_large)) {
        return violation(fmt::format("it sent an unknown result status {}", body.status));
      }
      auto status = static_cast<ResultStatus>(body.status);
      std::uint64_t limit =
          status == ResultStatus::ok ? max_result_bytes_ : max_error_message_bytes;
      if (status == ResultStatus::ok && current->in_place && body.bytes != sizeof(std::uint64_t)) {
        return violation("it answered an in-place job with something other than a size");
      }
      if (body.bytes > limit) {
        return violation(fmt::format("it announced a result of {} bytes, over the limit of {}",
                                     body.bytes, limit));
      }
      receiving_ = true;
      result_status_ = status;
      expected_ = body.bytes;
      received_.clear();
      discarded_ = 0;
      receive_failure_.reset();
      // The buffer grows as the bytes arrive: a size announced is not memory to set aside.
      if (expected_ == 0) return finish_result();
      return std::nullopt;
    }
    case RecordType::result_data: {
      if (!receiving_ || header.job_id != current->id ||
          header.length > expected_ - received_.size() - discarded_) {
        return violation("it sent result bytes that do not belong to the current result");
      }
      if (!receive_failure_) receive_bytes(record);
      if (receive_failure_) discarded_ += header.length;
      if (received_.size() + discarded_ != expected_) return std::nullopt;
      if (!receive_failure_ && result_status_ == ResultStatus::ok && current->in_place) {
        std::uint64_t written = 0;
        std::memcpy(&written, received_.data(), sizeof written);
        if (written > current->in_place->output.size()) {
          return violation(fmt::format("it says it wrote {} bytes into an output buffer of {}",
                                       written, current->in_place->output.size()));
        }
      }
      return finish_result();
    }
    default:
      return violation("it sent a host-to-worker record");
  }
}

void WorkerLink::receive_bytes(const RecordView& record) {
  try {
    const std::uint64_t needed = received_.size() + record.header.length;
    if (needed > received_.capacity()) {
      // Geometric growth, never past the size announced.
      received_.reserve(static_cast<std::size_t>(std::min<std::uint64_t>(
          expected_, std::max<std::uint64_t>(needed, 2 * received_.capacity()))));
    }
    responses_.append_body(record, received_);
  } catch (const std::bad_alloc&) {
    // This job's result does not fit in the host: it fails alone, its worker reads on, and the
    // rest of its result is read and dropped.
    const std::size_t had = received_.size();
    Bytes().swap(received_);
    discarded_ = had;
    receive_failure_ = fmt::format(
        "the host could not allocate memory for the job's result of {} bytes (received {} when "
        "an allocation failed); lower PoolOptions::max_result_bytes, return the result in parts "
        "or through a lent buffer, or give the host more memory",
        expected_, had);
  }
}

Arrival WorkerLink::finish_result() {
  Arrival arrival;
  arrival.kind = Arrival::Kind::result;
  arrival.status = result_status_;
  arrival.bytes = std::move(received_);
  received_ = Bytes();
  arrival.receive_failure = std::move(receive_failure_);
  receive_failure_.reset();
  discarded_ = 0;
  receiving_ = false;
  waiting_for_space_ = false;
  return arrival;
}

// ---- Output -----------------------------------------------------------------------------------

WorkerLink::OutputRead WorkerLink::read_output(bool until_eof) {
  OutputRead result;
  if (!output_) return result;
  char buffer[4096];
  const Clock::time_point now = Clock::now();
  std::size_t budget = until_eof ? output_bytes_after_exit : output_bytes_per_turn;
  while (!result.ended) {
    if (budget == 0) {
      result.ended = until_eof;  // a dead worker's pipe is read no further; a live one's next turn
      break;
    }
    auto n = platform::read_some(output_.get(), buffer, std::min(sizeof buffer, budget));
    if (!n) {
      result.ended =
          until_eof;  // nothing more for now; after the worker, whatever comes is dropped
      output_lines_.report_dropped(result.lines);
      break;
    }
    if (*n == 0) {
      result.ended = true;  // EOF
      break;
    }
    budget -= *n;
    output_lines_.take(std::string_view(buffer, *n), now, result.lines);
  }
  if (result.ended) output_lines_.finish(now, result.lines);
  return result;
}

}  // namespace procpool::detail
