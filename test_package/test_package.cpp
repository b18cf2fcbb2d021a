// A package manager's smoke test of procpool: the program is its own worker, and one typed job
// makes the round trip through a worker process.
#include <cstdio>
#include <procpool/procpool.hpp>
#include <string_view>

namespace {

struct Twice {
  static constexpr std::string_view name = "twice";
  using Request = int;
  using Response = int;
};

}  // namespace

int main(int argc, char** argv) {
  procpool::JobRegistry jobs;
  jobs.add<Twice>([](procpool::JobContext&, const int& x) { return 2 * x; });
  if (auto rc = procpool::run_worker_if_requested(argc, argv, jobs)) return *rc;

  procpool::PoolOptions options;
  options.workers = 1;
  procpool::Pool pool(options);
  procpool::Result<int> r = pool.submit<Twice>(21).get();
  if (!r.ok()) {
    std::fprintf(stderr, "test_package: the job failed: %s\n", r.error().message.c_str());
    return 1;
  }
  std::printf("test_package: procpool %d.%d.%d, 2 * 21 = %d in a worker\n", PROCPOOL_VERSION_MAJOR,
              PROCPOOL_VERSION_MINOR, PROCPOOL_VERSION_PATCH, r.value());
  return r.value() == 42 ? 0 : 1;
}
