// Pool: runs jobs in recyclable worker processes.
//
// At a glance (the workers are this same program, started again by the pool):
//
//   int main(int argc, char** argv) {
//     procpool::JobRegistry jobs;  // the jobs a worker can run; the same in host and workers
//     jobs.add("echo", [](procpool::JobContext&, std::span<const std::byte> payload) {
//       return procpool::Bytes(payload.begin(), payload.end());
//     });
//     if (auto rc = procpool::run_worker_if_requested(argc, argv, jobs)) return *rc;  // first
//
//     procpool::PoolOptions options;  // options.hpp: every field has a working default
//     options.recycle.memory_soft_limit = std::uint64_t{512} << 20;  // retire a worker above it
//     procpool::Pool pool(options);
//
//     procpool::Bytes payload(64);
//     procpool::JobResult result = pool.submit("echo", payload).get();  // exactly one outcome
//     if (!result.ok()) std::puts(result.error().message.c_str());      // failures are values
//     procpool::JobResult now = pool.call("echo", payload);  // submit + get, at less cost
//     auto futures = pool.submit_batch("echo", std::vector<procpool::Bytes>(100, payload));
//     procpool::PoolStats stats = pool.stats();  // to_json / to_prometheus: stats_format.hpp
//   }
//
// Typed jobs (codec.hpp) add and submit a struct instead of bytes; in-place jobs (lend,
// submit_in_place) work on shared buffers without a copy. docs/getting-started.md walks through
// it all.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "procpool/codec.hpp"
#include "procpool/export.hpp"
#include "procpool/future.hpp"
#include "procpool/lent_buffer.hpp"
#include "procpool/options.hpp"
#include "procpool/result.hpp"
#include "procpool/stats.hpp"

namespace procpool {

/// A pool of worker processes, each running one job at a time from a shared queue.
///
/// The constructor starts a supervisor thread, which spawns the workers (so that their
/// parent-death signal is tied to a thread that lives as long as the pool); it does not wait for
/// them to be ready (jobs queue until one is). Every job submitted gets exactly one outcome,
/// including when the pool is shut down or destroyed with jobs queued or running.
///
/// Thread-safety: all member functions may be called concurrently from any thread, except that
/// shutdown() and the destructor must not be called from a Completion callback.
///
/// A Pool works only in the process that made it. In a fork of that process (a prefork server, a
/// daemon that forks to detach), the copy has no supervisor thread: every job submitted there
/// fails at once with ErrorKind::invalid_request naming both pids, and the other members answer
/// without waiting, as each says, leaving the original pool alone. Make the pool after fork()
/// (docs/gotchas.md, "A fork of the host").
class PROCPOOL_API Pool {
 public:
  /// Validates `options` (throws ConfigError naming the field on bad values), starts the supervisor
  /// and spawns the workers. Also throws std::system_error if the OS refuses the supervisor's own
  /// resources (threads, file descriptors). Failure to start workers is not an error here: it is
  /// retried with backoff and reported through health and stats.
  explicit Pool(PoolOptions options = {});

  /// shutdown(options.destructor_drain). Never throws. In a fork of the host, stops nothing and
  /// waits for nothing: the copy's memory and descriptors (close-on-exec) stay until the process
  /// exits or execs.
  ~Pool();

  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  /// Queues the job `job_name` with a copy of `payload`. The returned future yields its outcome.
  /// Never throws for job failures; a job that cannot be queued (queue full, shutting down, payload
  /// too large, invalid options) yields a ready future holding that error.
  JobFuture submit(std::string_view job_name, std::span<const std::byte> payload,
                   const SubmitOptions& options = {});
  /// As above, taking ownership of the payload (no copy).
  JobFuture submit(std::string_view job_name, Bytes&& payload, const SubmitOptions& options = {});

  /// Queues the job and calls `on_done` with its outcome instead of returning a future. If the job
  /// cannot be queued, `on_done` is called before submit returns, on the calling thread.
  JobId submit(std::string_view job_name, Bytes payload, const SubmitOptions& options,
               Completion on_done);

  /// Queues one job `job_name` per payload, in order, in one call: the queue is locked once per
  /// 1,024 jobs (or per part that fits the queue) and the supervisor woken at most as often, which
  /// is what makes many small jobs cheap (see docs/benchmarks.md). futures[i] yields the outcome of
  /// payloads[i]. Each job is validated and rejected on its own, as by submit(); when the queue
  /// fills up, the remaining jobs are rejected with ErrorKind::queue_full or, under
  /// QueueFullPolicy::block, the call waits for room. The jobs' ids are consecutive. Never throws
  /// for job failures.
  std::vector<JobFuture> submit_batch(std::string_view job_name, std::vector<Bytes> payloads,
                                      const SubmitOptions& options = {});

  /// As above, calling `on_done(i, outcome)` for payloads[i] instead of returning futures. Jobs
  /// rejected at submission are reported before this returns, on the calling thread. Returns the
  /// first job's id; job i has id first + i. An empty batch returns the id the next job would have
  /// had and calls nothing.
  JobId submit_batch(std::string_view job_name, std::vector<Bytes> payloads,
                     const SubmitOptions& options, BatchCompletion on_done);

  /// Typed batch: encodes each request with Codec<J::Request>; futures[i] decodes J::Response.
  template <TypedJob J>
  std::vector<Future<typename J::Response>> submit_batch(
      std::span<const typename J::Request> requests, const SubmitOptions& options = {}) {
    std::vector<Bytes> payloads;
    payloads.reserve(requests.size());
    for (const auto& request : requests)
      payloads.push_back(Codec<typename J::Request>::encode(request));
    std::vector<JobFuture> raw = submit_batch(J::name, std::move(payloads), options);
    std::vector<Future<typename J::Response>> typed;
    typed.reserve(raw.size());
    for (auto& future : raw)
      typed.emplace_back(std::move(future));
    return typed;
  }

  /// Typed submit: encodes `request` with Codec<J::Request>; the future decodes J::Response.
  template <TypedJob J>
  Future<typename J::Response> submit(const typename J::Request& request,
                                      const SubmitOptions& options = {}) {
    return Future<typename J::Response>(
        submit(J::name, Codec<typename J::Request>::encode(request), options));
  }

  /// Runs the job `job_name` on a copy of `payload` and waits for its outcome: what
  /// submit(job_name, payload, options).get() returns, at less cost. If a worker is idle, and the
  /// pool is confined to this thread's one CPU or nobody polls for the result (SpinPolicy off, no
  /// CPU free, or the worker's jobs typically take longer than SpinPolicy::budget), this thread
  /// gives it the job and reads the result itself while the supervisor thread sleeps on: two
  /// context switches per job on a shared CPU instead of four, two sleeping wake-ups instead of
  /// four across CPUs (docs/architecture.md, "the direct hand-off").
  /// Otherwise the job is queued as by submit(). Either way every rule of a queued job holds
  /// (timeouts, retries, recycling, events and log lines on the supervisor thread).
  ///
  /// Never throws for job failures. Besides submit()'s errors, a call from a Completion callback
  /// yields ErrorKind::invalid_request at once, since it would wait for the thread that runs it.
  JobResult call(std::string_view job_name, std::span<const std::byte> payload,
                 const SubmitOptions& options = {});
  /// As above, taking ownership of the payload (no copy).
  JobResult call(std::string_view job_name, Bytes&& payload, const SubmitOptions& options = {});

  /// Typed call: encodes `request` with Codec<J::Request> and decodes J::Response.
  template <TypedJob J>
  Result<typename J::Response> call(const typename J::Request& request,
                                    const SubmitOptions& options = {}) {
    return Future<typename J::Response>(
               start_call(J::name, Codec<typename J::Request>::encode(request), options))
        .get();
  }

  /// Lends a buffer of `bytes` in shared memory for submit_in_place, reusing one given back if
  /// one fits. The caller writes an input into it, or passes it as an output. Throws
  /// std::invalid_argument for 0 bytes, std::runtime_error if the OS refuses the memory, and
  /// std::logic_error in a fork of the host.
  LentBuffer lend(std::size_t bytes);

  /// Queues the in-place job `job_name` (JobRegistry::add_in_place): the worker maps `input`
  /// read-only and `output` writable and its handler works on them where they lie, so no byte of
  /// either is copied through the pool. The future yields how many bytes the handler wrote at the
  /// start of `output`; read them there once the future is ready. Until then, leave both buffers
  /// alone. An in-place job is never sent ahead to a busy worker (PrefetchPolicy).
  ///
  /// Never throws for job failures. Besides submit()'s errors, a ready future holds
  /// ErrorKind::invalid_request for an empty buffer or the same buffer twice, and
  /// payload_too_large for an input over max_payload_bytes or an output over max_result_bytes.
  Future<std::uint64_t> submit_in_place(std::string_view job_name, LentBuffer input,
                                        LentBuffer output, const SubmitOptions& options = {});

  /// Runs the in-place job `job_name` on `input` and `output` and waits for its outcome: what
  /// submit_in_place(job_name, input, output, options).get() returns, with this thread handing the
  /// job to an idle worker itself wherever call() would. Large in-place jobs typically take longer
  /// than SpinPolicy::budget, so after the first few it usually does. The errors of
  /// submit_in_place and of call; never throws for job failures.
  Result<std::uint64_t> call_in_place(std::string_view job_name, LentBuffer input,
                                      LentBuffer output, const SubmitOptions& options = {});

  /// Cancels the job `id`. True: its outcome is, or will be, ErrorKind::cancelled, whatever its
  /// worker answers from now on (a result returned after an interrupt is discarded). False: it
  /// keeps the outcome it has or will have, because it already has one, is unknown (in a fork of
  /// the host, every job is), or started under CancelMode::if_queued with no stop asked for. A job
  /// not yet started (queued, sent ahead, waiting to be retried) completes at once, on this thread;
  /// a started one when its worker stops it or is killed (`mode`). A job counts as started once the
  /// worker it was given or sent ahead to has read it. Cancelling again may raise the mode
  /// (interrupt, then kill). Exactly one outcome, always.
  bool cancel(JobId id, CancelMode mode = CancelMode::if_queued);

  /// A consistent snapshot of the pool and its workers. In a fork of the host: PoolHealth::stopped,
  /// no worker, no job and zero counts (only min_workers and max_workers are set).
  PoolStats stats() const;

  /// Stops the pool: new submits fail with ErrorKind::shutting_down at once; queued and running
  /// jobs may finish for up to `drain`; then queued jobs fail with shutting_down, workers still
  /// running jobs get SIGTERM (SIGKILL after kill_grace) and their jobs fail with shutting_down.
  /// Returns when every worker has been reaped and every job has its outcome. Calling it again does
  /// nothing, and so does calling it in a fork of the host.
  void shutdown(std::chrono::milliseconds drain = std::chrono::milliseconds{0});

 private:
  /// call() up to the wait: returns once the job's outcome is in the future, or once the
  /// supervisor thread has the job.
  JobFuture start_call(std::string_view job_name, Bytes&& payload, const SubmitOptions& options);
  /// call_in_place() up to the wait, as start_call.
  Future<std::uint64_t> start_call_in_place(std::string_view job_name, LentBuffer input,
                                            LentBuffer output, const SubmitOptions& options);

  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace procpool
