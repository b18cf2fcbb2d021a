#include "procpool/pool.hpp"

#include "options_validation.hpp"
#include "supervisor.hpp"

namespace procpool {

// The pool's one part: its supervisor (src/supervisor.hpp).
class Pool::Impl {
 public:
  explicit Impl(PoolOptions options) : supervisor(std::move(options)) {}
  detail::Supervisor supervisor;
};

namespace {

// Starts a job with `start(sink)`, whose outcome goes to a fresh promise, and returns the future
// (`FutureType`) of that job.
template <class FutureType, class Start>
FutureType with_future(Start&& start) {
  detail::OutcomePromise promise;
  std::shared_ptr<detail::OutcomeState> state = promise.state();
  JobId id = start(std::move(promise));
  return FutureType(id, std::move(state));
}

}  // namespace

Pool::Pool(PoolOptions options)
    : impl_(std::make_unique<Impl>(detail::validate(std::move(options)))) {}

Pool::~Pool() {
  // In a forked copy the Impl is left as it is: its thread does not exist here (~std::thread would
  // terminate), its fork server, workers and cgroups are the host's, and the supervisor thread may
  // have been changing its state at the fork. Its memory and descriptors (close-on-exec) stay
  // with the copy until it exits or execs.
  if (impl_->supervisor.forked_copy(true)) (void)impl_.release();
}

JobFuture Pool::submit(std::string_view job_name, std::span<const std::byte> payload,
                       const SubmitOptions& options) {
  return submit(job_name, Bytes(payload.begin(), payload.end()), options);
}

JobFuture Pool::submit(std::string_view job_name, Bytes&& payload, const SubmitOptions& options) {
  return with_future<JobFuture>([&](detail::OutcomeSink sink) {
    return impl_->supervisor.submit(job_name, std::move(payload), options, std::move(sink));
  });
}

JobId Pool::submit(std::string_view job_name, Bytes payload, const SubmitOptions& options,
                   Completion on_done) {
  return impl_->supervisor.submit(job_name, std::move(payload), options, std::move(on_done));
}

std::vector<JobFuture> Pool::submit_batch(std::string_view job_name, std::vector<Bytes> payloads,
                                          const SubmitOptions& options) {
  std::vector<detail::OutcomeSink> sinks;
  std::vector<std::shared_ptr<detail::OutcomeState>> states;
  sinks.reserve(payloads.size());
  states.reserve(payloads.size());
  for (std::size_t i = 0; i < payloads.size(); ++i) {
    detail::OutcomePromise promise;
    states.push_back(promise.state());
    sinks.emplace_back(std::move(promise));
  }
  JobId first =
      impl_->supervisor.submit_batch(job_name, std::move(payloads), options, std::move(sinks));
  std::vector<JobFuture> futures;
  futures.reserve(states.size());
  for (std::size_t i = 0; i < states.size(); ++i)
    futures.emplace_back(first + i, std::move(states[i]));
  return futures;
}

JobId Pool::submit_batch(std::string_view job_name, std::vector<Bytes> payloads,
                         const SubmitOptions& options, BatchCompletion on_done) {
  auto shared = std::make_shared<BatchCompletion>(std::move(on_done));
  std::vector<detail::OutcomeSink> sinks;
  sinks.reserve(payloads.size());
  for (std::size_t i = 0; i < payloads.size(); ++i)
    sinks.emplace_back(detail::BatchSink{shared, i});
  return impl_->supervisor.submit_batch(job_name, std::move(payloads), options, std::move(sinks));
}

JobResult Pool::call(std::string_view job_name, std::span<const std::byte> payload,
                     const SubmitOptions& options) {
  return start_call(job_name, Bytes(payload.begin(), payload.end()), options).get();
}

JobResult Pool::call(std::string_view job_name, Bytes&& payload, const SubmitOptions& options) {
  return start_call(job_name, std::move(payload), options).get();
}

JobFuture Pool::start_call(std::string_view job_name, Bytes&& payload,
                           const SubmitOptions& options) {
  return with_future<JobFuture>([&](detail::OutcomeSink sink) {
    return impl_->supervisor.call(job_name, std::move(payload), options, std::move(sink));
  });
}

LentBuffer Pool::lend(std::size_t bytes) {
  return impl_->supervisor.lend(bytes);
}

Future<std::uint64_t> Pool::submit_in_place(std::string_view job_name, LentBuffer input,
                                            LentBuffer output, const SubmitOptions& options) {
  return with_future<Future<std::uint64_t>>([&](detail::OutcomeSink sink) {
    return impl_->supervisor.submit_in_place(job_name, std::move(input), std::move(output), options,
                                             std::move(sink));
  });
}

Result<std::uint64_t> Pool::call_in_place(std::string_view job_name, LentBuffer input,
                                          LentBuffer output, const SubmitOptions& options) {
  return start_call_in_place(job_name, std::move(input), std::move(output), options).get();
}

Future<std::uint64_t> Pool::start_call_in_place(std::string_view job_name, LentBuffer input,
                                                LentBuffer output, const SubmitOptions& options) {
  return with_future<Future<std::uint64_t>>([&](detail::OutcomeSink sink) {
    return impl_->supervisor.call_in_place(job_name, std::move(input), std::move(output), options,
                                           std::move(sink));
  });
}

bool Pool::cancel(JobId id, CancelMode mode) {
  return impl_->supervisor.cancel(id, mode);
}

PoolStats Pool::stats() const {
  return impl_->supervisor.stats();
}

void Pool::shutdown(std::chrono::milliseconds drain) {
  impl_->supervisor.shutdown(drain);
}

}  // namespace procpool
