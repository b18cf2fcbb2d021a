// Per-worker memory cgroups (PoolOptions::worker_cgroups): what they add to a recycle, and how soon
// a job crossing the kernel's cap gets its outcome against a job crossing the sampled hard limit.
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench_util.hpp"
#include "measurements.hpp"
#include "pool_harness.hpp"

namespace bench {

namespace {

constexpr std::uint64_t memory_cap_bytes = std::uint64_t{128} << 20;

procpool::MemoryCgroupOptions capped_workers() {
  procpool::MemoryCgroupOptions caps;
  caps.enabled = true;
  caps.max_bytes = memory_cap_bytes;
  caps.required = true;  // a benchmark of caps that silently ran without them would lie
  return caps;
}

// Why workers cannot have memory cgroups here, or "" if they can.
std::string why_no_memory_cgroups() {
  procpool::PoolOptions o = pool_options(1);
  o.worker_cgroups = capped_workers();
  try {
    procpool::Pool pool(o);
    return "";
  } catch (const procpool::ConfigError& e) {
    return e.what();
  }
}

// Where a "grow_mb_stamped" job leaves its times: [0] its latest allocation step, [1] the moment
// its resident memory first reached the limit it was given (0 until then). In a shared file the
// host created and touched, so that its page is charged to the host, not the worker's cgroup. A
// memfd, which workers open through the host's /proc/<pid>/fd: a file in /dev/shm would outlive a
// bench that is killed (a ctest timeout did, and CI's leftover check failed).
class GrowthStamps {
 public:
  GrowthStamps() {
    fd_ = ::memfd_create("procpool-bench-stamps", MFD_CLOEXEC);
    if (fd_ < 0 || ::ftruncate(fd_, 4096) != 0) {
      throw std::runtime_error("cannot make the stamps memfd");
    }
    path_ = fmt::format("/proc/{}/fd/{}", ::getpid(), fd_);
    void* at = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
    if (at == MAP_FAILED) throw std::runtime_error("cannot map " + path_);
    stamps_ = static_cast<std::atomic<std::int64_t>*>(at);
    reset();
  }
  ~GrowthStamps() {
    ::munmap(stamps_, 4096);
    ::close(fd_);
  }
  GrowthStamps(const GrowthStamps&) = delete;
  GrowthStamps& operator=(const GrowthStamps&) = delete;
  void reset() {
    stamps_[0].store(0);
    stamps_[1].store(0);
  }
  // When the job crossed its limit: the moment it said so, or its last step if it was stopped
  // before its resident memory showed it (the kernel counts more than resident memory).
  std::int64_t crossed_at() const {
    return stamps_[1].load() ? stamps_[1].load() : stamps_[0].load();
  }
  procpool::Bytes payload(std::uint32_t grow_mib, std::uint32_t limit_mib) const {
    std::string text = fmt::format("{} {} {}", grow_mib, limit_mib, path_);
    const auto* first = reinterpret_cast<const std::byte*>(text.data());
    return procpool::Bytes(first, first + text.size());
  }

 private:
  int fd_ = -1;
  std::string path_;
  std::atomic<std::int64_t>* stamps_ = nullptr;
};

// From a job crossing its worker's memory limit to its outcome (memory_limit), in ms: the limit
// is the kernel's cap (`caps`), or the sampled hard limit at the default memory_sample_interval.
std::vector<double> limit_to_outcome_ms(std::size_t jobs, bool caps) {
  procpool::PoolOptions o = pool_options(1);
  o.log = [](procpool::LogLevel, std::string_view) {};  // one memory kill per job, by design
  if (caps) {
    o.worker_cgroups = capped_workers();
  } else {
    o.recycle.memory_hard_limit = memory_cap_bytes;
  }
  procpool::Pool pool(o);
  GrowthStamps stamps;
  const auto limit_mib = static_cast<std::uint32_t>(memory_cap_bytes >> 20);
  std::vector<double> ms;
  for (std::size_t i = 0; i < jobs; ++i) {
    settle(pool, 1);
    stamps.reset();
    procpool::JobResult r =
        pool.submit("grow_mb_stamped", stamps.payload(4 * limit_mib, limit_mib)).get();
    const std::int64_t outcome = now_ns();
    if (r.ok() || r.error().kind != procpool::ErrorKind::memory_limit) {
      throw std::runtime_error("a job growing past its limit did not end with memory_limit");
    }
    if (stamps.crossed_at() > 0)
      ms.push_back(static_cast<double>(outcome - stamps.crossed_at()) / 1e6);
  }
  return ms;
}

}  // namespace

procpool::Bytes grow_mb_stamped(procpool::JobContext&, std::span<const std::byte> in) {
  std::string text(reinterpret_cast<const char*>(in.data()), in.size());
  unsigned grow_mib = 0, limit_mib = 0;
  char path[256] = {};
  if (std::sscanf(text.c_str(), "%u %u %255s", &grow_mib, &limit_mib, path) != 3) {
    throw std::runtime_error("payload: <grow MiB> <limit MiB> <stamps file>");
  }
  int fd = ::open(path, O_RDWR | O_CLOEXEC);
  void* at = fd < 0 ? MAP_FAILED : ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (fd >= 0) ::close(fd);
  if (at == MAP_FAILED) throw std::runtime_error("cannot map the stamps file");
  auto* stamps = static_cast<std::atomic<std::int64_t>*>(at);
  static std::vector<std::unique_ptr<char[]>> kept;
  constexpr std::size_t step = std::size_t{1} << 20;
  for (unsigned i = 0; i < grow_mib; ++i) {
    kept.push_back(std::make_unique<char[]>(step));
    std::memset(kept.back().get(), 1, step);
    const std::int64_t now = now_ns();
    stamps[0].store(now);
    if (stamps[1].load() == 0 && self_rss_bytes() >= (std::uint64_t{limit_mib} << 20)) {
      stamps[1].store(now);
    }
  }
  for (;;)
    ::pause();
  return procpool::Bytes{};
}

void measure_memory_caps(const Config& cfg, Report& report) {
  log_progress("procpool: per-worker memory cgroups (recycle cost; limit -> outcome)");
  const std::string why_not = why_no_memory_cgroups();
  if (!why_not.empty()) {
    Row& r = report.add_row("procpool.recycle_cgroups_added.p50", "procpool",
                            "recycle p50 added by per-worker memory cgroups", "ms", {});
    r.note = "not measured: " + why_not;
    return;
  }
  const procpool::MemoryCgroupOptions caps = capped_workers();
  std::vector<double> without, with, added;
  // Where the time goes: retiring -> spawned (the supervisor's part) and spawned -> ready.
  std::vector<double> spawn_without, spawn_with, start_without, start_with;
  recycle_latencies_ms(std::min<std::size_t>(cfg.recycles_per_rep, 10), procpool::StartMode::exec,
                       nullptr, nullptr, &caps);  // warm-up
  for (std::size_t rep = 0; rep < cfg.reps; ++rep) {
    // Side by side, alternating, so that both see the same machine.
    double plain = percentile(recycle_latencies_ms(cfg.recycles_per_rep, procpool::StartMode::exec,
                                                   &spawn_without, &start_without),
                              50);
    double capped = percentile(recycle_latencies_ms(cfg.recycles_per_rep, procpool::StartMode::exec,
                                                    &spawn_with, &start_with, &caps),
                               50);
    without.push_back(plain);
    with.push_back(capped);
    added.push_back(capped - plain);
  }
  report.add_row("procpool.recycle_no_cgroups_beside.p50", "procpool",
                 "recycle: retiring event -> replacement ready, p50 (measured beside the next row)",
                 "ms", without);
  Row& w = report.add_row(
      "procpool.recycle_cgroups.p50", "procpool",
      "recycle: retiring event -> replacement ready, p50, per-worker memory cgroups", "ms", with);
  report.set_baseline(w, "procpool.recycle_no_cgroups_beside.p50");
  Row& d = report.add_row("procpool.recycle_cgroups_added.p50", "procpool",
                          "recycle p50 added by per-worker memory cgroups", "ms", added);
  set_target(d, TargetKind::abs_max, 0.3, "<= +0.3 ms");
  d.note = fmt::format(
      "median over repetitions of (p50 with - p50 without), {} recycles each, alternating; the "
      "cgroup is made before the worker starts and removed after it is reaped; medians of all "
      "recycles without/with: retiring -> spawned {:.3f}/{:.3f} ms, spawned -> ready {:.3f}/{:.3f} "
      "ms",
      cfg.recycles_per_rep, median(spawn_without), median(spawn_with), median(start_without),
      median(start_with));

  const std::size_t jobs = cfg.quick ? 3 : 10;
  std::vector<double> sampled, capped;
  for (std::size_t rep = 0; rep < cfg.reps; ++rep) {
    sampled.push_back(median(limit_to_outcome_ms(jobs, false)));
    capped.push_back(median(limit_to_outcome_ms(jobs, true)));
  }
  report.add_row(
      "procpool.limit_to_outcome_sampled.p50", "procpool",
      "a job crossing memory_hard_limit -> its memory_limit outcome, p50 (sampled, 250 ms)", "ms",
      sampled);
  Row& k = report.add_row("procpool.limit_to_outcome_cgroup.p50", "procpool",
                          "a job crossing its memory cgroup cap -> its memory_limit outcome, p50",
                          "ms", capped);
  report.set_baseline(k, "procpool.limit_to_outcome_sampled.p50");
  k.note = fmt::format(
      "{} jobs per repetition growing by touched 1 MiB steps past a {} MiB limit; the crossing is "
      "stamped by the job (its last step, where the kernel stopped it first)",
      jobs, memory_cap_bytes >> 20);
}

}  // namespace bench
