// A host service under a container's memory limit: it holds memory of its own (models, caches),
// runs one worker with an RSS hard limit, and submits a job whose allocations outrun the memory
// sampling. test_oom runs it inside a memory cgroup and reads what it prints:
//   outcome <ok|error kind> <message>
//   echo <ok|error kind>
//   retried <ok|error kind> <message>   (an idempotent job OOM-killed on its first attempt)
//   host memory <intact|changed>
//   oom_kill events <n>
//   recycles <reason>=<workers that left for it>...
// Arguments: <exec|fork_server> <host MiB> <memory_hard_limit MiB> <job MiB> <memory sample ms>.
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <procpool/procpool.hpp>
#include <string>

#include "test_jobs.hpp"
#include "test_support.hpp"

namespace {

std::string outcome_line(const procpool::JobResult& result) {
  if (result.ok()) return "ok";
  return std::string(procpool::to_string(result.error().kind)) + " " + result.error().message;
}

}  // namespace

int main(int argc, char** argv) {
  procpool::JobRegistry jobs = procpool::test::make_test_registry();
  if (auto rc = procpool::run_worker_if_requested(argc, argv, jobs)) return *rc;
  if (argc != 6) {
    std::fprintf(
        stderr,
        "usage: %s <exec|fork_server> <host MiB> <memory_hard_limit MiB> <job MiB> <sample ms>\n",
        argv[0]);
    return 2;
  }
  const std::string mode = argv[1];
  const std::size_t host_bytes = std::strtoull(argv[2], nullptr, 10) << 20;
  const std::uint64_t hard_limit = std::strtoull(argv[3], nullptr, 10) << 20;
  const auto job_mib = static_cast<std::uint32_t>(std::strtoul(argv[4], nullptr, 10));
  const std::chrono::milliseconds sample_interval(std::strtoll(argv[5], nullptr, 10));

  // The service's own memory, touched, with a pattern to check afterwards.
  std::unique_ptr<unsigned char[]> held(new unsigned char[host_bytes]);
  for (std::size_t i = 0; i < host_bytes; ++i)
    held[i] = static_cast<unsigned char>(i * 31);

  procpool::PoolOptions options = procpool::test::quiet_options(1);
  if (mode == "fork_server") options.start_mode = procpool::StartMode::fork_server;
  options.recycle.memory_hard_limit = hard_limit;
  options.recycle.memory_sample_interval = sample_interval;
  std::atomic<int> oom_kill_events{0};
  options.on_event = [&](const procpool::PoolEvent& event) {
    if (event.type == procpool::EventType::oom_kill) ++oom_kill_events;
  };
  procpool::Pool pool(options);
  if (!procpool::test::settled(pool, 1)) {
    std::fprintf(stderr, "oom_host: the worker did not start\n");
    return 1;
  }
  procpool::JobResult big = pool.submit("grab_mb", procpool::test::encode_value(job_mib)).get();
  std::printf("outcome %s\n", outcome_line(big).c_str());
  procpool::JobResult echo = pool.submit("echo", procpool::test::bytes("still serving")).get();
  std::printf("echo %s\n", outcome_line(echo).c_str());
  procpool::SubmitOptions twice;
  twice.idempotent = true;
  twice.max_attempts = 2;
  procpool::JobResult retried =
      pool.submit("grab_mb_first_attempt", procpool::test::encode_value(job_mib), twice).get();
  std::printf("retried %s\n", outcome_line(retried).c_str());
  bool intact = true;
  for (std::size_t i = 0; i < host_bytes && intact; ++i)
    intact = held[i] == static_cast<unsigned char>(i * 31);
  std::printf("host memory %s\n", intact ? "intact" : "changed");
  std::printf("oom_kill events %d\n", oom_kill_events.load());
  std::printf("recycles");
  const procpool::PoolStats stats = pool.stats();
  for (std::size_t i = 0; i < procpool::recycle_reason_count; ++i) {
    if (stats.recycles_by_reason[i] == 0) continue;
    std::printf(" %s=%llu",
                std::string(procpool::to_string(static_cast<procpool::RecycleReason>(i))).c_str(),
                static_cast<unsigned long long>(stats.recycles_by_reason[i]));
  }
  std::printf("\n");
  return 0;
}
