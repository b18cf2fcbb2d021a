// What the host keeps: its RSS and descriptors over many jobs and many recycles; and what an idle
// pool costs in CPU.
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <thread>
#include <vector>

#include "bench_util.hpp"
#include "measurements.hpp"
#include "pool_harness.hpp"

namespace bench {

void measure_leaks(const Config& cfg, Report& report) {
  log_progress(fmt::format("procpool: host RSS and fds over {} jobs", cfg.leak_jobs));
  {
    procpool::Pool pool(pool_options(2));
    settle(pool, 2);
    run_pipelined(pool, cfg.leak_warmup);
    settle(pool, 2);
    double rss0 = static_cast<double>(self_rss_bytes());
    double fd0 = static_cast<double>(self_fd_count());
    for (std::size_t done = 0; done < cfg.leak_jobs; done += 100'000) {
      run_pipelined(pool, std::min<std::size_t>(100'000, cfg.leak_jobs - done));
    }
    settle(pool, 2);
    double rss1 = static_cast<double>(self_rss_bytes());
    double fd1 = static_cast<double>(self_fd_count());
    Row& a = report.add_row("procpool.host_rss_growth_jobs", "procpool",
                            fmt::format("host RSS growth over {} jobs", cfg.leak_jobs), "MiB",
                            {(rss1 - rss0) / static_cast<double>(mib)});
    set_target(a, TargetKind::abs_max, 1, "<= 1 MiB");
    a.note = fmt::format("one run; {:.1f} -> {:.1f} MiB after a {}-job warm-up", rss0 / mib,
                         rss1 / mib, cfg.leak_warmup);
    if (cfg.quick) a.note += "; --quick runs far fewer jobs than the target's 1,000,000";
    Row& b = report.add_row("procpool.host_fd_change_jobs", "procpool",
                            fmt::format("host fd count change over {} jobs", cfg.leak_jobs), "fds",
                            {fd1 - fd0});
    set_target(b, TargetKind::abs_max, 0, "unchanged");
    b.note = fmt::format("{:.0f} -> {:.0f}", fd0, fd1);
  }
  log_progress(fmt::format("procpool: host RSS and fds over {} recycles", cfg.leak_recycles));
  {
    procpool::PoolOptions o = pool_options(2);
    o.recycle.max_jobs = 1;
    procpool::Pool pool(o);
    settle(pool, 2);
    run_pipelined(pool, 20);
    settle(pool, 2);
    double rss0 = static_cast<double>(self_rss_bytes());
    double fd0 = static_cast<double>(self_fd_count());
    run_pipelined(pool, cfg.leak_recycles);
    settle(pool, 2);
    double rss1 = static_cast<double>(self_rss_bytes());
    double fd1 = static_cast<double>(self_fd_count());
    Row& a = report.add_row("procpool.host_rss_growth_recycles", "procpool",
                            fmt::format("host RSS growth over {} recycles", cfg.leak_recycles),
                            "MiB", {(rss1 - rss0) / static_cast<double>(mib)});
    set_target(a, TargetKind::abs_max, 1, "<= 1 MiB");
    a.note = fmt::format("one run; {:.1f} -> {:.1f} MiB after 20 recycles", rss0 / mib, rss1 / mib);
    if (cfg.quick) a.note += "; --quick runs far fewer recycles than the target's 10,000";
    Row& b = report.add_row("procpool.host_fd_change_recycles", "procpool",
                            fmt::format("host fd count change over {} recycles", cfg.leak_recycles),
                            "fds", {fd1 - fd0});
    set_target(b, TargetKind::abs_max, 0, "unchanged");
    b.note = fmt::format("{:.0f} -> {:.0f}", fd0, fd1);
  }
}

void measure_idle(const Config& cfg, Report& report) {
  log_progress(
      fmt::format("procpool: idle CPU, 4 workers, {} x {:.0f} s", cfg.idle_reps, cfg.idle_seconds));
  procpool::Pool pool(pool_options(4));
  settle(pool, 4);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  std::vector<int> pids = worker_pids(pool);
  pids.push_back(static_cast<int>(getpid()));
  std::vector<double> pct_ns, pct_ticks;
  const double ticks_per_s = static_cast<double>(sysconf(_SC_CLK_TCK));
  auto read_all = [&](bool ticks) {
    double total = 0;
    for (int pid : pids) {
      auto v = ticks ? cpu_ticks_of(pid) : cpu_ns_of(pid);
      if (!v) throw std::runtime_error("a worker of the idle pool went away");
      total += static_cast<double>(*v);
    }
    return total;
  };
  for (std::size_t rep = 0; rep < cfg.idle_reps; ++rep) {
    double ns0 = read_all(false), t0 = read_all(true);
    std::int64_t w0 = now_ns();
    std::this_thread::sleep_for(std::chrono::duration<double>(cfg.idle_seconds));
    double ns1 = read_all(false), t1 = read_all(true);
    double wall = static_cast<double>(now_ns() - w0);
    pct_ns.push_back((ns1 - ns0) / wall * 100);
    pct_ticks.push_back((t1 - t0) / ticks_per_s / (wall / 1e9) * 100);
  }
  Row& a = report.add_row(
      "procpool.idle_cpu_pct", "procpool",
      fmt::format("idle pool, 4 workers, {:.0f} s: CPU of host + workers", cfg.idle_seconds),
      "% core", pct_ns);
  set_target(a, TargetKind::abs_max, 0.1, "<= 0.1%");
  a.note = fmt::format(
      "from /proc/<pid>/task/*/schedstat (ns); utime+stime from /proc/<pid>/stat gives {:.3f}% "
      "(10 ms ticks); {} repetition(s)",
      median(pct_ticks), cfg.idle_reps);
}

}  // namespace bench
