// A program written the way a user of an installed procpool writes one: it registers an "echo"
// job, turns itself into a worker when the pool re-executes it, and checks one round trip.
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <procpool/procpool.hpp>
#include <span>

int main(int argc, char** argv) {
  procpool::JobRegistry jobs;
  jobs.add("echo", [](procpool::JobContext&, std::span<const std::byte> in) {
    return procpool::Bytes(in.begin(), in.end());
  });
  if (auto rc = procpool::run_worker_if_requested(argc, argv, jobs)) return *rc;

  procpool::PoolOptions options;
  options.workers = 1;
  procpool::Pool pool(options);

  const procpool::Bytes sent{std::byte{'p'}, std::byte{0x00}, std::byte{'o'}, std::byte{0xff},
                             std::byte{'l'}};
  procpool::JobFuture future = pool.submit("echo", sent);
  if (future.wait_for(std::chrono::seconds(60)) != std::future_status::ready) {
    std::fprintf(stderr, "consumer: the echo job did not finish within 60 s\n");
    return 1;
  }
  procpool::JobResult result = future.get();
  if (!result.ok()) {
    std::fprintf(stderr, "consumer: the echo job failed (%.*s): %s\n",
                 static_cast<int>(procpool::to_string(result.error().kind).size()),
                 procpool::to_string(result.error().kind).data(), result.error().message.c_str());
    return 1;
  }
  if (result.value() != sent) {
    std::fprintf(stderr, "consumer: echo returned %zu bytes that differ from the %zu sent\n",
                 result.value().size(), sent.size());
    return 1;
  }
  std::printf("consumer: procpool %d.%d.%d echoed %zu bytes through a worker\n",
              PROCPOOL_VERSION_MAJOR, PROCPOOL_VERSION_MINOR, PROCPOOL_VERSION_PATCH,
              result.value().size());
  return 0;
}
