// The baselines' rows: ping-pongs between two processes, memcpy, a hand-off with no library,
// spawn-to-ready, and Python's process pools.
#include <fmt/format.h>
#include <unistd.h>

#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "baselines.hpp"
#include "bench_util.hpp"
#include "measurements.hpp"
#include "pool_harness.hpp"
#include "python_baselines.hpp"

namespace bench {

namespace {

struct PingPongFigures {
  std::vector<double> p50_us, p99_us, per_s;
};

std::string self_exe() {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) throw std::runtime_error("readlink(/proc/self/exe)");
  return std::string(buf, static_cast<std::size_t>(n));
}

}  // namespace

void measure_native_baselines(const Config& cfg, Report& report) {
  std::vector<Placement> placements = {Placement::same_core, Placement::unpinned};
  if (usable_cpus() >= 2) placements.insert(placements.begin() + 1, Placement::cross_core);
  for (PingPongKind kind :
       {PingPongKind::futex, PingPongKind::eventfd, PingPongKind::pipe, PingPongKind::spin}) {
    for (Placement pl : placements) {
      // Polling on one CPU waits for the scheduler's tick, and unpinned the two may share one.
      if (kind == PingPongKind::spin && pl != Placement::cross_core) continue;
      log_progress(fmt::format("baseline: {} ping-pong, {}", to_string(kind), to_string(pl)));
      PingPongFigures f;
      std::vector<double> switches;
      for (std::size_t rep = 0; rep < cfg.reps; ++rep) {
        PingPongRun run = ping_pong(kind, pl, cfg.pingpong_n, cfg.pingpong_warmup);
        f.p50_us.push_back(percentile(run.rtt_ns, 50) / 1e3);
        f.p99_us.push_back(percentile(run.rtt_ns, 99) / 1e3);
        f.per_s.push_back(static_cast<double>(cfg.pingpong_n) / (run.elapsed_ns / 1e9));
        switches.push_back(run.switches_per_round_trip);
      }
      std::string key = fmt::format("{}_{}", to_string(kind),
                                    pl == Placement::same_core    ? "same_core"
                                    : pl == Placement::cross_core ? "cross_core"
                                                                  : "unpinned");
      std::string label =
          fmt::format("{} ping-pong round trip, {}", to_string(kind), to_string(pl));
      report.add_row("baseline." + key + ".p50", "baselines", label + ", p50", "us", f.p50_us);
      report.add_row("baseline." + key + ".p99", "baselines", label + ", p99", "us", f.p99_us);
      report.add_row("baseline." + key + ".per_s", "baselines", label + ", round trips/s", "1/s",
                     f.per_s);
      if (kind == PingPongKind::futex) {
        report.add_row("baseline." + key + ".switches", "baselines",
                       label + ", context switches per round trip (both processes)", "1/rt",
                       switches);
      }
    }
  }

  log_progress("baseline: memcpy 16 MiB");
  std::vector<double> one, two;
  for (std::size_t rep = 0; rep < cfg.reps; ++rep) {
    double m = median(memcpy_ns(16 * mib, cfg.memcpy_samples)) / 1e6;
    one.push_back(m);
    two.push_back(2 * m);
  }
  report.add_row("baseline.memcpy_16MiB", "baselines", "memcpy 16 MiB (warm buffers)", "ms", one);
  report.add_row("baseline.memcpy_16MiB_x2", "baselines",
                 "memcpy 16 MiB in + 16 MiB out (2 x memcpy)", "ms", two);

  log_progress("baseline: 16 MiB handed to another process and back");
  std::vector<double> handoff_ms, beside_ms;
  for (std::size_t rep = 0; rep < cfg.reps; ++rep) {
    HandoffRun run = handoff(16 * mib, cfg.payload_samples);
    handoff_ms.push_back(median(run.handoff_ms));
    beside_ms.push_back(median(run.memcpy_ms));
  }
  Row& handoff_row = report.add_row(
      "baseline.handoff_16MiB", "baselines",
      "16 MiB written, handed to another process (futex), copied there", "ms", handoff_ms);
  handoff_row.note =
      "no library: the parent writes a shared input, wakes a forked child, which copies it into a "
      "shared output and wakes the parent; unpinned; the floor of the zero-copy row";
  add_memcpy_beside(report, handoff_row, std::move(beside_ms),
                    "the same two copies made by the parent, into the same shared buffers");

  log_progress("baseline: spawn to ready");
  const std::string exe = self_exe();
  std::vector<double> p50, p99;
  for (std::size_t rep = 0; rep < cfg.reps; ++rep) {
    auto ns = spawn_to_ready_ns(exe, cfg.spawn_samples);
    p50.push_back(percentile(ns, 50) / 1e6);
    p99.push_back(percentile(ns, 99) / 1e6);
  }
  report.add_row("baseline.spawn_ready.p50", "baselines",
                 "posix_spawn of this binary until it writes a byte, p50", "ms", p50);
  report.add_row("baseline.spawn_ready.p99", "baselines",
                 "posix_spawn of this binary until it writes a byte, p99", "ms", p99);
}

void measure_python_baselines(const Config& cfg, Report& report) {
  if (!cfg.python) {
    report.python_note = "Python baselines skipped (--no-python)";
    return;
  }
  log_progress("baseline: Python (ProcessPoolExecutor, multiprocessing.Pool, 2 workers)");
  PythonResults py = run_python_baselines(cfg.py);
  report.python_note = py.note;
  report.python_version = py.version;
  struct Label {
    const char* metric;
    const char* what;
    const char* unit;
  };
  const Label labels[] = {
      {"executor_submit_result_p50_us", "Python ProcessPoolExecutor submit().result(), p50", "us"},
      {"executor_submit_result_p99_us", "Python ProcessPoolExecutor submit().result(), p99", "us"},
      {"executor_submit_result_per_s", "Python ProcessPoolExecutor submit().result(), jobs/s",
       "1/s"},
      {"executor_pipelined_per_s", "Python ProcessPoolExecutor, all submitted then wait(), jobs/s",
       "1/s"},
      {"pool_map_chunksize1_per_s", "Python multiprocessing.Pool.map(chunksize=1), jobs/s", "1/s"},
      {"executor_max_tasks_per_child1_forkserver_per_s",
       "Python ProcessPoolExecutor(max_tasks_per_child=1, forkserver), jobs/s", "1/s"},
      {"executor_max_tasks_per_child1_spawn_per_s",
       "Python ProcessPoolExecutor(max_tasks_per_child=1, spawn), jobs/s", "1/s"},
      {"pool_maxtasksperchild1_fork_per_s",
       "Python multiprocessing.Pool(maxtasksperchild=1, fork).map, jobs/s", "1/s"},
  };
  double best_recycle = nan_value;
  for (const Label& l : labels) {
    auto it = py.samples.find(l.metric);
    if (it == py.samples.end()) continue;
    Row& r = report.add_row(std::string("baseline.python.") + l.metric, "baselines", l.what, l.unit,
                            it->second);
    if (std::string(l.metric).find("per_child1") != std::string::npos ||
        std::string(l.metric).find("perchild1") != std::string::npos) {
      if (std::isnan(best_recycle) || r.figure > best_recycle) best_recycle = r.figure;
    }
  }
  if (!std::isnan(best_recycle)) {
    report.add_row("baseline.python.max_tasks_per_child1_best_per_s", "baselines",
                   "Python max_tasks_per_child=1, best of the variants above, jobs/s", "1/s",
                   {best_recycle});
  }
}

}  // namespace bench
