// quickstart: run jobs in worker processes that re-execute this binary.
#include <fmt/format.h>

#include <procpool/procpool.hpp>
#include <string>
#include <thread>

namespace {

procpool::Bytes to_bytes(std::string_view text) {
  const auto* p = reinterpret_cast<const std::byte*>(text.data());
  return procpool::Bytes(p, p + text.size());
}

std::string to_text(const procpool::Bytes& bytes) {
  return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

// A typed job: the request and response are encoded with procpool::Codec.
struct Square {
  static constexpr std::string_view name = "square";
  using Request = long;
  using Response = long;
};

}  // namespace

int main(int argc, char** argv) {
  procpool::JobRegistry jobs;
  jobs.add("echo", [](procpool::JobContext&, std::span<const std::byte> in) {
    return procpool::Bytes(in.begin(), in.end());
  });
  jobs.add("whoami", [](procpool::JobContext& context, std::span<const std::byte>) {
    return to_bytes(
        fmt::format("job {} ran in a worker, attempt {}", context.job_id(), context.attempt()));
  });
  jobs.add("explode", [](procpool::JobContext&, std::span<const std::byte>) -> procpool::Bytes {
    throw std::runtime_error("the handler gave up");
  });
  jobs.add<Square>([](procpool::JobContext&, const long& x) { return x * x; });

  // In a worker this runs the job loop and returns its exit code; in the host it returns nullopt.
  if (auto rc = procpool::run_worker_if_requested(argc, argv, jobs)) return *rc;

  procpool::PoolOptions options;  // defaults: re-exec this binary as the worker
  options.workers = 2;
  procpool::Pool pool(options);

  procpool::JobResult echoed = pool.submit("echo", to_bytes("hello from the host")).get();
  fmt::print("echo     -> {}\n", to_text(echoed.value()));
  fmt::print("whoami   -> {}\n", to_text(pool.submit("whoami", procpool::Bytes{}).get().value()));
  fmt::print("square   -> 12 * 12 = {}\n", pool.submit<Square>(12).get().value());

  for (const char* name : {"explode", "no-such-job"}) {
    procpool::JobResult r = pool.submit(name, procpool::Bytes{}).get();
    if (!r.ok())
      fmt::print("{:<8} -> {}: {}\n", name, procpool::to_string(r.error().kind), r.error().message);
  }

  procpool::PoolStats stats = pool.stats();
  fmt::print("pool: {} workers, {} jobs succeeded, {} failed\n", stats.workers.size(),
             stats.succeeded, stats.failed);
  for (const auto& w : stats.workers) {
    fmt::print("  worker pid {} ({}): {} jobs, RSS {:.1f} MiB\n", w.pid,
               procpool::to_string(w.state), w.jobs_done,
               static_cast<double>(w.rss_bytes) / (1 << 20));
  }
  return 0;
}
