// Replacing a worker: from its retiring event to its replacement's ready event, per StartMode and
// with a small or a 1 GiB host; and the throughput of max_jobs = 1 (a fresh worker per job).
#include <fmt/format.h>

#include <algorithm>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "bench_util.hpp"
#include "measurements.hpp"
#include "pool_harness.hpp"

namespace bench {

namespace {

// Row keys and labels of the two StartModes.
std::string mode_key(procpool::StartMode mode) {
  return mode == procpool::StartMode::fork_server ? "_fork_server" : "";
}
std::string mode_label(procpool::StartMode mode) {
  return mode == procpool::StartMode::fork_server ? ", StartMode::fork_server" : "";
}

void measure_recycle(const Config& cfg, Report& report, bool big_host, procpool::StartMode mode) {
  log_progress(fmt::format("procpool: recycle latency (max_jobs = 1){}{}",
                           big_host ? ", 1 GiB host" : "", mode_label(mode)));
  std::vector<char> ballast;
  if (big_host) {
    ballast.assign(std::size_t{1} << 30, 1);  // touched: 1 GiB resident in the host
  }
  std::vector<double> p50, p99, spawn_ms, start_ms;
  recycle_latencies_ms(std::min<std::size_t>(cfg.recycles_per_rep, 10), mode);  // warm-up
  for (std::size_t rep = 0; rep < cfg.reps; ++rep) {
    auto ms = recycle_latencies_ms(cfg.recycles_per_rep, mode, &spawn_ms, &start_ms);
    p50.push_back(percentile(ms, 50));
    p99.push_back(percentile(ms, 99));
  }
  std::string suffix = std::string(big_host ? ", 1 GiB host" : "") + mode_label(mode);
  std::string key = "procpool.recycle" + mode_key(mode) + (big_host ? "_1GiB_host" : "");
  Row& a = report.add_row(key + ".p50", "procpool",
                          "recycle: retiring event -> replacement ready, p50" + suffix, "ms", p50);
  report.set_baseline(a, "baseline.spawn_ready.p50");
  set_target(a, TargetKind::abs_max, 2, "<= 2 ms");
  a.note = fmt::format(
      "1 worker, max_jobs = 1, {} recycles per repetition; host RSS {:.0f} MiB; medians: retiring "
      "-> spawned {:.2f} ms ({}), spawned -> ready {:.2f} ms ({})",
      cfg.recycles_per_rep, static_cast<double>(self_rss_bytes()) / static_cast<double>(mib),
      percentile(spawn_ms, 50),
      mode == procpool::StartMode::fork_server
          ? "segment, then the fork server's fork and answer, while the supervisor goes on"
          : "segment + launch, in the supervisor",
      percentile(start_ms, 50),
      mode == procpool::StartMode::fork_server ? "the forked process attaching"
                                               : "the new process starting");
  Row& b = report.add_row(key + ".p99", "procpool",
                          "recycle: retiring event -> replacement ready, p99" + suffix, "ms", p99);
  report.set_baseline(b, "baseline.spawn_ready.p99");
  set_target(b, TargetKind::abs_max, 5, "<= 5 ms");
}

void measure_max_jobs1_for(const Config& cfg, Report& report, procpool::StartMode mode) {
  log_progress("procpool: max_jobs = 1, 2 workers, throughput" + mode_label(mode));
  std::vector<double> per_s;
  procpool::PoolOptions o = pool_options(2);
  o.recycle.max_jobs = 1;
  o.start_mode = mode;
  procpool::Pool pool(o);
  settle(pool, 2);
  run_pipelined(pool, 10);
  settle(pool, 2);
  for (std::size_t rep = 0; rep < cfg.reps; ++rep) {
    std::int64_t t0 = now_ns();
    if (run_pipelined(pool, cfg.max_jobs1_n) != 0) throw std::runtime_error("max_jobs=1 failures");
    per_s.push_back(static_cast<double>(cfg.max_jobs1_n) /
                    (static_cast<double>(now_ns() - t0) / 1e9));
    settle(pool, 2);
  }
  Row& r =
      report.add_row("procpool.max_jobs1" + mode_key(mode) + "_per_s", "procpool",
                     "max_jobs = 1, 2 workers, pipelined, jobs/s" + mode_label(mode), "1/s", per_s);
  report.set_baseline(r, "baseline.python.max_tasks_per_child1_best_per_s");
  set_target(r, TargetKind::abs_min, 800, ">= 800/s");
  r.note = "baseline: best Python max_tasks_per_child=1 variant";
}

}  // namespace

std::vector<double> recycle_latencies_ms(std::size_t n, procpool::StartMode mode,
                                         std::vector<double>* spawn_ms,
                                         std::vector<double>* start_ms,
                                         const procpool::MemoryCgroupOptions* caps) {
  std::mutex m;
  std::vector<std::pair<procpool::EventType, std::int64_t>> events;
  procpool::PoolOptions o = pool_options(1);
  o.recycle.max_jobs = 1;
  o.start_mode = mode;
  if (caps) o.worker_cgroups = *caps;
  o.on_event = [&](const procpool::PoolEvent& e) {
    if (e.type == procpool::EventType::retiring || e.type == procpool::EventType::ready ||
        e.type == procpool::EventType::spawned) {
      std::int64_t t = now_ns();
      std::lock_guard lock(m);
      events.emplace_back(e.type, t);
    }
  };
  procpool::Pool pool(o);
  settle(pool, 1);
  {
    std::lock_guard lock(m);
    events.clear();
  }
  for (std::size_t i = 0; i < n; ++i)
    check_ok(pool.submit("noop", procpool::Bytes{}).get());
  settle(pool, 1);
  std::vector<double> out;
  std::lock_guard lock(m);
  std::int64_t pending = -1, spawned = -1;
  for (const auto& [type, t] : events) {
    if (type == procpool::EventType::retiring) {
      pending = t;
      spawned = -1;
    } else if (type == procpool::EventType::spawned) {
      if (pending >= 0 && spawn_ms) spawn_ms->push_back(static_cast<double>(t - pending) / 1e6);
      spawned = t;
    } else if (pending >= 0) {
      out.push_back(static_cast<double>(t - pending) / 1e6);
      if (spawned >= 0 && start_ms) start_ms->push_back(static_cast<double>(t - spawned) / 1e6);
      pending = -1;
    }
  }
  return out;
}

void measure_recycles(const Config& cfg, Report& report) {
  for (procpool::StartMode mode : {procpool::StartMode::exec, procpool::StartMode::fork_server}) {
    measure_recycle(cfg, report, false, mode);
    if (cfg.big_host) measure_recycle(cfg, report, true, mode);
  }
}

void measure_max_jobs1(const Config& cfg, Report& report) {
  measure_max_jobs1_for(cfg, report, procpool::StartMode::exec);
  measure_max_jobs1_for(cfg, report, procpool::StartMode::fork_server);
}

}  // namespace bench
