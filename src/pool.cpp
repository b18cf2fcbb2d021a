#include "procpool/pool.hpp"

#include "options_validation.hpp"
#include "supervisor.hpp"

namespace procpool {

class Pool::Impl : public detail::Supervisor {
 public:
  using detail::Supervisor::Supervisor;
};

Pool::Pool(PoolOptions options)
    : impl_(std::make_unique<Impl>(detail::validate(std::move(options)))) {}

Pool::~Pool() = default;

JobFuture Pool::submit(std::string_view job_name, std::span<const std::byte> payload,
                       const SubmitOptions& options) {
  return submit(job_name, Bytes(payload.begin(), payload.end()), options);
}

JobFuture Pool::submit(std::string_view job_name, Bytes&& payload, const SubmitOptions& options) {
  std::promise<JobResult> promise;
  std::future<JobResult> future = promise.get_future();
  JobId id = impl_->submit(job_name, std::move(payload), options, std::move(promise));
  return JobFuture(id, std::move(future));
}

JobId Pool::submit(std::string_view job_name, Bytes payload, const SubmitOptions& options,
                   Completion on_done) {
  return impl_->submit(job_name, std::move(payload), options, std::move(on_done));
}

bool Pool::cancel(JobId id) {
  return impl_->cancel(id);
}

PoolStats Pool::stats() const {
  return impl_->stats();
}

void Pool::shutdown(std::chrono::milliseconds drain) {
  impl_->shutdown(drain);
}

}  // namespace procpool
