// leaky_native: the seeds' story, measured. A "native SDK" call leaks memory the way the Azure
// Speech SDK did (~260 MB per request). Run on threads inside the host, the leak is the host's and
// the host grows until it would be OOM-killed. Run through procpool, the leak dies with recycled
// worker processes and the host stays flat.
//
//   procpool-leaky-native [--leak-mb N] [--requests N] [--csv FILE]
//
// Prints one line per request (host RSS, worker RSS) and writes the same figures as CSV.
#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <procpool/procpool.hpp>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr std::uint64_t MiB = std::uint64_t{1} << 20;

// What a leaky native library does: allocate, touch (so it is resident), never free.
void leaky_native_call(std::uint32_t leak_mb) {
  for (std::uint32_t i = 0; i < leak_mb; ++i) {
    auto* block = new char[MiB];  // deliberately never deleted
    std::memset(block, 1, MiB);
  }
}

double rss_mib(int pid) {
  std::ifstream statm("/proc/" + std::to_string(pid) + "/statm");
  std::uint64_t size = 0, resident = 0;
  statm >> size >> resident;
  return static_cast<double>(resident * static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE))) / MiB;
}

struct Options {
  std::uint32_t leak_mb = 26;
  int requests = 10;
  std::string csv = "leak-thread-vs-process.csv";
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    if (flag == "--leak-mb") {
      o.leak_mb = static_cast<std::uint32_t>(std::stoul(argv[i + 1]));
    } else if (flag == "--requests") {
      o.requests = std::stoi(argv[i + 1]);
    } else if (flag == "--csv") {
      o.csv = argv[i + 1];
    } else {
      throw std::invalid_argument("unknown option " + flag + " (use --leak-mb, --requests, --csv)");
    }
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  procpool::JobRegistry jobs;
  jobs.add("native.transcribe", [](procpool::JobContext&, std::span<const std::byte> in) {
    std::uint32_t leak_mb = 0;
    std::memcpy(&leak_mb, in.data(), std::min(in.size(), sizeof leak_mb));
    leaky_native_call(leak_mb);
    return procpool::Bytes{};
  });
  if (auto rc = procpool::run_worker_if_requested(argc, argv, jobs)) return *rc;

  Options options;
  try {
    options = parse(argc, argv);
  } catch (const std::exception& e) {
    fmt::print(stderr, "{}\n", e.what());
    return 2;
  }
  std::ofstream csv(options.csv);
  csv << "mode,request,host_rss_mib,worker_rss_mib\n";
  const int host = ::getpid();
  fmt::print("each request leaks {} MiB of native memory; {} requests per mode\n\n",
             options.leak_mb, options.requests);

  // 1. procpool (first, so the host has not leaked yet): one worker, retired once it passes a soft
  // limit of three requests' worth of leak,
  //    and recycled when idle.
  procpool::PoolOptions pool_options;
  pool_options.workers = 1;
  pool_options.recycle.memory_soft_limit = 3 * options.leak_mb * MiB + 16 * MiB;
  pool_options.recycle.idle_timeout = std::chrono::seconds(1);
  procpool::Pool pool(pool_options);
  procpool::Bytes payload(sizeof options.leak_mb);
  std::memcpy(payload.data(), &options.leak_mb, sizeof options.leak_mb);
  fmt::print("procpool (soft limit {} MiB)   host RSS     worker RSS\n",
             pool_options.recycle.memory_soft_limit / MiB);
  for (int r = 1; r <= options.requests; ++r) {
    procpool::JobResult result = pool.submit("native.transcribe", payload).get();
    if (!result.ok()) {
      fmt::print(stderr, "request {} failed: {}\n", r, result.error().message);
      return 1;
    }
    procpool::PoolStats stats = pool.stats();
    double worker_rss = 0;
    for (const auto& w : stats.workers) {
      if (w.jobs_done > 0)
        worker_rss = std::max(worker_rss, static_cast<double>(w.rss_bytes) / MiB);
    }
    double host_rss = rss_mib(host);
    fmt::print("  request {:>3}                  {:>8.1f} MiB {:>8.1f} MiB\n", r, host_rss,
               worker_rss);
    csv << fmt::format("procpool,{},{:.1f},{:.1f}\n", r, host_rss, worker_rss);
  }
  procpool::PoolStats stats = pool.stats();
  fmt::print("\nworkers recycled for the soft limit: {}; the host stayed at {:.1f} MiB\n",
             stats.recycles(procpool::RecycleReason::memory_soft_limit), rss_mib(host));
  for (const auto& job : stats.jobs) {
    fmt::print("memory attribution: {}: {:+.1f} MiB per call\n", job.name,
               job.memory_delta_mean_bytes / MiB);
  }

  // 2. Threads: each request on its own thread, like a ThreadPoolExecutor(max_workers=1).
  const double host_rss_before_threads = rss_mib(host);
  fmt::print("\nthreads in the host             host RSS\n");
  for (int r = 1; r <= options.requests; ++r) {
    std::thread([&] { leaky_native_call(options.leak_mb); }).join();
    double host_rss = rss_mib(host);
    fmt::print("  request {:>3}                  {:>8.1f} MiB\n", r, host_rss);
    csv << fmt::format("threads,{},{:.1f},\n", r, host_rss);
  }
  fmt::print(
      "\nthe same leak on threads grew the host by {:.1f} MiB; at ~260 MB per request a\n"
      "container with a 2.5 GiB limit is OOM-killed around request 10\n",
      rss_mib(host) - host_rss_before_threads);

  fmt::print("CSV written to {}\n", options.csv);
  return 0;
}
