// JobRegistry and JobContext: the jobs a worker can run, and what a running job can know.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "procpool/codec.hpp"
#include "procpool/error.hpp"
#include "procpool/export.hpp"
#include "procpool/result.hpp"

namespace procpool {

/// What a job handler can learn about the job it is running. Lives in the worker process, valid
/// for the duration of the handler call only.
class JobContext {
 public:
  /// Made by the worker runtime for each handler call; a test of a handler may make one directly.
  /// `stop_word` and `stop_token`: stop_requested() is true once `*stop_word == stop_token`
  /// (never without a word).
  JobContext(std::string_view job_name, std::uint64_t job_id, unsigned attempt,
             std::uint64_t jobs_done_by_worker,
             std::optional<std::chrono::steady_clock::time_point> deadline,
             const std::atomic<std::uint32_t>* stop_word = nullptr,
             std::uint32_t stop_token = 0) noexcept
      : job_name_(job_name),
        job_id_(job_id),
        attempt_(attempt),
        jobs_done_by_worker_(jobs_done_by_worker),
        deadline_(deadline),
        stop_word_(stop_word),
        stop_token_(stop_token) {}

  /// The name the job was submitted under.
  std::string_view job_name() const noexcept { return job_name_; }
  /// The id Pool::submit returned for this job (the same across retries).
  std::uint64_t job_id() const noexcept { return job_id_; }
  /// 1 on the first attempt; higher when an idempotent job is retried after a crash, a timeout or
  /// a memory kill.
  unsigned attempt() const noexcept { return attempt_; }
  /// How many jobs this worker process finished before this one.
  std::uint64_t jobs_done_by_worker() const noexcept { return jobs_done_by_worker_; }
  /// About when the supervisor will start killing this job, if it has a timeout or a deadline
  /// (SubmitOptions::deadline), whichever comes first: counted here from when the payload arrived,
  /// so slightly later than the supervisor's (which counts from dispatch).
  std::optional<std::chrono::steady_clock::time_point> deadline() const noexcept {
    return deadline_;
  }
  /// True once the host asked this job to stop (Pool::cancel with CancelMode::interrupt): return
  /// or throw soon. Whatever the handler returns from then on is discarded (the job ends
  /// ErrorKind::cancelled); past PoolOptions::kill_grace the worker is killed. A load from shared
  /// memory, cheap enough to poll in a loop.
  bool stop_requested() const noexcept {
    return stop_word_ && stop_word_->load(std::memory_order_relaxed) == stop_token_;
  }

 private:
  std::string_view job_name_;
  std::uint64_t job_id_;
  unsigned attempt_;
  std::uint64_t jobs_done_by_worker_;
  std::optional<std::chrono::steady_clock::time_point> deadline_;
  const std::atomic<std::uint32_t>* stop_word_;
  std::uint32_t stop_token_;
};

/// A job handler: takes the payload, returns the result bytes. Throwing makes the job fail with
/// ErrorKind::handler_error carrying what() of the exception.
using JobHandler = std::function<Bytes(JobContext&, std::span<const std::byte>)>;

/// A job handler that owns its payload: it may change the bytes and return them (or any other
/// Bytes) as the result. Where the result is the payload transformed, this saves the copy into a
/// new Bytes that a JobHandler must make, which for payloads of megabytes is a memcpy of them all.
/// Throwing makes the job fail with ErrorKind::handler_error carrying what() of the exception.
using OwningJobHandler = std::function<Bytes(JobContext&, Bytes payload)>;

/// An in-place job handler (Pool::submit_in_place): reads `input` and writes its result at the
/// start of `output`, both shared memory lent by the host, and returns how many bytes it wrote
/// (at most output.size()). Nothing is copied on the way in or out. Throwing fails the job with
/// ErrorKind::handler_error; returning more than output.size() fails it with payload_too_large.
/// `input` and `output` are usable only until the handler returns or throws: the worker then takes
/// its access to both away, and a later touch (through a kept pointer, or by a thread the handler
/// started) kills the worker with SIGSEGV, unless the pool keeps them accessible
/// (PoolOptions::lent_buffers_after_job).
using InPlaceHandler = std::function<std::size_t(JobContext&, std::span<const std::byte> input,
                                                 std::span<std::byte> output)>;

/// The set of jobs a worker process can run, by name. Build it at the top of main(), before
/// run_worker_if_requested(), in both host and worker (for self-exec they are the same code).
/// Not thread-safe to mutate; safe to read concurrently once built.
class PROCPOOL_API JobRegistry {
 public:
  /// Registers `handler` under `name`. Throws ConfigError if the name is empty, longer than 255
  /// bytes, already registered, or the handler is empty.
  void add(std::string name, JobHandler handler);

  /// Registers a typed job: `handler(JobContext&, const J::Request&)` returns a J::Response. The
  /// request is decoded and the response encoded with Codec<>; a decode failure fails the job with
  /// ErrorKind::codec_error.
  template <TypedJob J, class F>
  requires std::is_invocable_r_v<typename J::Response, F&, JobContext&, const typename J::Request&>
  void add(F handler) {
    add(std::string(J::name),
        [h = std::move(handler)](JobContext& context, std::span<const std::byte> payload) mutable {
          typename J::Request request = Codec<typename J::Request>::decode(payload);
          return Codec<typename J::Response>::encode(h(context, request));
        });
  }

  /// Registers a handler that owns its payload (OwningJobHandler) under `name`; submitted as any
  /// job. Same rules for the name as add(); a name has one handler of one kind. Throws
  /// ConfigError.
  void add_owning(std::string name, OwningJobHandler handler);

  /// Registers an in-place handler under `name` (same rules for the name as add(); a name has one
  /// handler of one kind). Throws ConfigError.
  void add_in_place(std::string name, InPlaceHandler handler);

  /// The handler registered under `name`, or nullptr. Never throws.
  const JobHandler* find(std::string_view name) const noexcept;
  /// The owning handler registered under `name`, or nullptr. Never throws.
  const OwningJobHandler* find_owning(std::string_view name) const noexcept;
  /// The in-place handler registered under `name`, or nullptr. Never throws.
  const InPlaceHandler* find_in_place(std::string_view name) const noexcept;

  /// The registered names, sorted.
  std::vector<std::string> names() const;

 private:
  void check_new_name(const std::string& name, bool has_handler) const;

  std::map<std::string, JobHandler, std::less<>> handlers_;
  std::map<std::string, OwningJobHandler, std::less<>> owning_handlers_;
  std::map<std::string, InPlaceHandler, std::less<>> in_place_handlers_;
};

}  // namespace procpool
