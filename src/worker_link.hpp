// The host's end of one worker's channel: the shared segment with its two rings, the descriptor
// socket for in-place jobs, the doorbell, and the worker's output pipe. It streams a job's request
// in, parses and checks every record the worker writes back, and returns what arrived (a hello, a
// whole result, or what the worker did wrong); it decides nothing about the worker and calls
// nobody. Supervisor thread only (and a Pool::call thread that holds the state lock).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "channel/layout.hpp"
#include "channel/ring.hpp"
#include "channel/segment.hpp"
#include "job.hpp"
#include "platform/platform.hpp"
#include "worker_output.hpp"

namespace procpool::detail {

/// What a worker's response ring delivered (WorkerLink::read).
struct Arrival {
  enum class Kind {
    /// Its hello, in the host's protocol version: it is ready.
    hello,
    /// The whole result of its current job.
    result,
    /// It broke the protocol (`violation` says how): nothing more is read from it.
    violation,
  };
  Kind kind = Kind::hello;
  ResultStatus status = ResultStatus::ok;
  /// The result's bytes, or the error message for a status other than ok.
  Bytes bytes;
  /// Why the result was dropped: the host could not allocate for it.
  std::optional<std::string> receive_failure;
  std::string violation;
};

/// What a WorkerLink's channel must allow.
struct LinkLimits {
  std::uint64_t ring_bytes = 0;
  std::uint64_t max_result_bytes = 0;
  /// PoolOptions::lent_buffers_after_job is kept_accessible (a flag of each in-place job).
  bool lent_kept_accessible = false;
  /// Lines of its output kept for the error of a job it dies on (PoolOptions::stderr_tail_lines).
  std::size_t tail_lines = 0;
};

class WorkerLink {
 public:
  using Clock = std::chrono::steady_clock;

  WorkerLink() = default;
  /// A link over a new `segment`, whose rings it sets up.
  WorkerLink(Segment segment, const LinkLimits& limits);

  Segment& segment() noexcept { return segment_; }
  SegmentHeader& header() noexcept { return segment_.header(); }
  /// Asks the worker to stop `job` (JobContext::stop_requested), once its job_start record is
  /// out; a later job is never affected.
  void ask_to_stop(const Job& job) noexcept {
    if (job.start_number != 0) {
      segment_.header().stop_requested_job.store(job.start_number, std::memory_order_relaxed);
    }
  }
  /// The rings, for the wait protocols (begin_wait, end_wait, has_data) of whoever sleeps on them.
  RingWriter& requests() noexcept { return requests_; }
  RingReader& responses() noexcept { return responses_; }
  /// The largest record body either ring takes.
  std::uint64_t max_body() const noexcept { return max_body_; }

  /// The host's ends of the descriptors the worker was started with.
  void attach(platform::UniqueFd doorbell, platform::UniqueFd channel, platform::UniqueFd output);
  int doorbell() const noexcept { return doorbell_.get(); }
  /// Its output pipe, or -1 once closed (close_output).
  int output() const noexcept { return output_.get(); }

  // ---- Requests -------------------------------------------------------------------------------

  /// What send() did.
  enum class Sent {
    /// The whole request is in the ring.
    whole,
    /// Part of the payload waits for the worker to free space; send() again later.
    waiting_for_space,
    /// The worker's read position in the request ring is impossible.
    ring_broken,
    /// It did not take an in-place job's buffers (it died or closed its channel).
    buffers_refused,
  };
  /// Starts a new request for `job`, from its first record; send() sends it.
  void begin_request() noexcept;
  /// `job`, sent whole ahead (send_ahead), is now the current one.
  void request_sent_ahead(const Job& job) noexcept;
  /// Sends what `job`'s request still lacks and publishes it. `records_one_by_one`: publish each
  /// payload record as it is written, so the worker copies one out while the next is copied in.
  Sent send(Job& job, bool records_one_by_one);
  /// Whether `job`'s request is in the ring whole (then its result may come).
  bool request_complete(const Job& job) const noexcept;
  /// A payload waits for space in the request ring.
  bool waiting_for_space() const noexcept { return waiting_for_space_; }
  /// No more of the current request is to be sent (the worker is stopping).
  void abandon_request() noexcept { waiting_for_space_ = false; }
  /// The ring's bytes that `job` takes when sent whole.
  static std::uint64_t bytes_ahead(const Job& job) noexcept;
  /// Writes `job` whole behind the current one (unpublished); the caller checked it fits.
  void send_ahead(Job& job);
  /// Publishes what send_ahead wrote, waking the worker if it sleeps.
  void publish() noexcept;
  /// Asks the worker to leave when it is done (a stop record).
  void send_stop() noexcept;
  /// job_start records sent: the number of the last one (job_claims.hpp).
  std::uint32_t starts_sent() const noexcept { return starts_sent_; }

  // ---- Responses ------------------------------------------------------------------------------

  /// Reads records until one completes an arrival, which it returns; nullopt once the ring is
  /// empty. `current`: the job the worker runs (a result for another one is a violation). After
  /// a violation, read no more.
  std::optional<Arrival> read(const Job* current);
  /// A result is arriving (its first record was read).
  bool receiving() const noexcept { return receiving_; }

  // ---- Output ---------------------------------------------------------------------------------

  /// What read_output found.
  struct OutputRead {
    std::vector<std::string> lines;  ///< to log
    bool ended = false;              ///< the pipe is done with: stop watching it, close_output()
  };
  /// Reads a bounded share of the worker's output; `until_eof`: it has exited, so its output is
  /// read to the end (or to a bound).
  OutputRead read_output(bool until_eof);
  void close_output() noexcept { output_.reset(); }
  /// Its last lines of output, oldest first.
  const std::deque<std::string>& output_tail() const noexcept { return output_lines_.tail(); }

 private:
  std::optional<Arrival> take(const RecordView& record, const Job* current);
  /// Appends a result_data record to the result being received; on an allocation failure, the
  /// result is dropped and its job is to fail (receive_failure_).
  void receive_bytes(const RecordView& record);
  Arrival finish_result();
  bool append_job_start(const Job& job);

  Segment segment_;
  RingWriter requests_;
  RingReader responses_;
  std::uint64_t max_body_ = 0;
  std::uint64_t max_result_bytes_ = 0;
  bool lent_kept_accessible_ = false;
  platform::UniqueFd doorbell_, channel_, output_;
  WorkerOutput output_lines_;
  bool hello_seen_ = false;

  // The current request: how far it has been sent.
  bool job_start_sent_ = false;
  std::uint64_t payload_sent_ = 0;
  bool waiting_for_space_ = false;
  std::uint32_t starts_sent_ = 0;

  // The result being received.
  bool receiving_ = false;
  ResultStatus result_status_ = ResultStatus::ok;
  std::uint64_t expected_ = 0;
  Bytes received_;
  /// Bytes of the result read and dropped since the host could not hold them.
  std::uint64_t discarded_ = 0;
  std::optional<std::string> receive_failure_;
};

}  // namespace procpool::detail
