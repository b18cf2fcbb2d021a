// procpool-bench: procpool measured side by side with baselines run in the same process.
//
//   procpool-bench [--quick] [--json PATH] [--reps N] [--no-python]
//
// Prints a table (figure, baseline, ratio, target, met/missed) and writes it as JSON. Every figure
// is the median over repetitions; every ratio is against a baseline measured in this same run.
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <mutex>
#include <procpool/procpool.hpp>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "baselines.hpp"
#include "bench_util.hpp"
#include "python_baselines.hpp"

namespace {

using bench::CacheFlush;
using bench::PingPongKind;
using bench::Placement;
constexpr double nan_value = std::numeric_limits<double>::quiet_NaN();
constexpr std::size_t mib = std::size_t{1} << 20;

// ---- configuration ---------------------------------------------------------------------------

struct Config {
  bool quick = false;
  bool python = true;
  std::string json_path = "benchmarks/results/latest.json";
  // Runs only the steps whose name contains this (for profiling one measurement); empty: all.
  std::string only;
  std::size_t reps = 5;
  std::size_t pingpong_n = 10'000;
  std::size_t pingpong_warmup = 1'000;
  std::size_t memcpy_samples = 21;
  std::size_t spawn_samples = 100;
  std::size_t rtt_n = 10'000;
  std::size_t rtt_warmup = 1'000;
  std::size_t blocking_n = 20'000;
  std::size_t pipelined_n = 100'000;
  std::size_t syscall_small_n = 10'000;
  std::size_t syscall_big_n = 100'000;
  std::size_t payload_samples = 3;
  std::size_t recycles_per_rep = 100;
  bool big_host = true;
  std::size_t max_jobs1_n = 400;
  // One batch of the measured run's size: it sets the allocator's high-water mark (a 100,000-job
  // queue of jobs and outcomes), so what grows afterwards is what a per-job leak would show.
  std::size_t leak_warmup = 100'000;
  std::size_t leak_jobs = 1'000'000;
  std::size_t leak_recycles = 10'000;
  std::size_t idle_reps = 3;
  double idle_seconds = 10;
  std::size_t spin_blocking_n = 20'000;  // per caller
  std::size_t spin_busy_n = 1'000;       // per caller, 200 us of CPU each
  bench::PythonSizes py;
};

Config quick_config() {
  Config c;
  c.quick = true;
  c.reps = 3;
  c.pingpong_n = 1'000;
  c.pingpong_warmup = 100;
  c.memcpy_samples = 5;
  c.spawn_samples = 10;
  c.rtt_n = 1'000;
  c.rtt_warmup = 100;
  c.blocking_n = 2'000;
  c.pipelined_n = 20'000;
  c.syscall_small_n = 2'000;
  c.syscall_big_n = 20'000;
  c.payload_samples = 1;
  c.recycles_per_rep = 10;
  c.big_host = false;
  c.max_jobs1_n = 60;
  c.leak_warmup = 20'000;
  c.leak_jobs = 20'000;
  c.leak_recycles = 100;
  c.idle_reps = 1;
  c.idle_seconds = 2;
  c.spin_blocking_n = 2'000;
  c.spin_busy_n = 100;
  c.py = bench::PythonSizes{1, 200, 2'000, 5'000, 40, 0};
  return c;
}

// ---- result rows -----------------------------------------------------------------------------

enum class TargetKind { none, ratio_max, ratio_min, abs_min, abs_max };

struct Row {
  std::string id;
  std::string section;
  std::string what;
  std::string unit;
  std::vector<double> per_rep;  // the figure of each repetition
  double figure = nan_value;    // median of per_rep
  std::string baseline_name;
  double baseline = nan_value;
  TargetKind target_kind = TargetKind::none;
  double target_value = nan_value;
  std::string target_text;
  std::string note;

  double ratio() const {
    if (std::isnan(figure) || std::isnan(baseline) || baseline == 0) return nan_value;
    return figure / baseline;
  }
  std::string status() const {
    if (target_kind == TargetKind::none) return "info";
    if (std::isnan(figure)) return "n/a";
    switch (target_kind) {
      case TargetKind::ratio_max:
        if (std::isnan(ratio())) return "n/a";
        return ratio() <= target_value ? "met" : "MISSED";
      case TargetKind::ratio_min:
        if (std::isnan(ratio())) return "n/a";
        return ratio() >= target_value ? "met" : "MISSED";
      case TargetKind::abs_min:
        return figure >= target_value ? "met" : "MISSED";
      case TargetKind::abs_max:
        return figure <= target_value ? "met" : "MISSED";
      case TargetKind::none:
        break;
    }
    return "info";
  }
};

std::vector<Row> rows;

Row& add_row(std::string id, std::string section, std::string what, std::string unit,
             std::vector<double> per_rep) {
  Row r;
  r.id = std::move(id);
  r.section = std::move(section);
  r.what = std::move(what);
  r.unit = std::move(unit);
  r.figure = per_rep.empty() ? nan_value : bench::median(per_rep);
  r.per_rep = std::move(per_rep);
  rows.push_back(std::move(r));
  return rows.back();
}

const Row* find_row(const std::string& id) {
  for (const auto& r : rows) {
    if (r.id == id) return &r;
  }
  return nullptr;
}

double figure_of(const std::string& id) {
  const Row* r = find_row(id);
  return r != nullptr ? r->figure : nan_value;
}

void set_baseline(Row& r, const std::string& baseline_id) {
  r.baseline_name = baseline_id;
  r.baseline = figure_of(baseline_id);
}

void set_target(Row& r, TargetKind kind, double value, std::string text) {
  r.target_kind = kind;
  r.target_value = value;
  r.target_text = std::move(text);
}

std::string num(double v) {
  if (std::isnan(v)) return "-";
  double a = std::fabs(v);
  if (a >= 10'000) return fmt::format("{:.0f}", v);
  if (a >= 100) return fmt::format("{:.1f}", v);
  if (a >= 1) return fmt::format("{:.2f}", v);
  if (a == 0) return "0";
  return fmt::format("{:.3g}", v);
}

std::string json_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += fmt::format("\\u{:04x}", static_cast<unsigned>(c));
        } else {
          out += c;
        }
    }
  }
  return out;
}

std::string json_num(double v) {
  return std::isfinite(v) ? fmt::format("{}", v) : "null";
}

void log_progress(const std::string& what) {
  std::fprintf(stderr, "[bench] %s\n", what.c_str());
  std::fflush(stderr);
}

// ---- procpool helpers ------------------------------------------------------------------------

procpool::PoolOptions pool_options(std::size_t workers) {
  procpool::PoolOptions o;
  o.workers = workers;
  o.when_queue_full = procpool::QueueFullPolicy::block;
  // Recycling logs one info line per worker; keep only warnings and errors.
  o.log = [](procpool::LogLevel level, std::string_view line) {
    if (level >= procpool::LogLevel::warning) {
      std::fprintf(stderr, "procpool: %.*s\n", static_cast<int>(line.size()), line.data());
    }
  };
  return o;
}

// Waits until `n` workers are idle and no other worker is alive (starting, retiring, stopping).
void settle(procpool::Pool& pool, std::size_t n) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < deadline) {
    procpool::PoolStats s = pool.stats();
    std::size_t idle = static_cast<std::size_t>(
        std::count_if(s.workers.begin(), s.workers.end(),
                      [](const auto& w) { return w.state == procpool::WorkerState::idle; }));
    if (idle == n && s.workers.size() == n && s.in_flight == 0 && s.queued == 0) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  throw std::runtime_error("the pool did not settle within 30 s");
}

std::vector<int> worker_pids(const procpool::Pool& pool) {
  std::vector<int> pids;
  for (const auto& w : pool.stats().workers)
    pids.push_back(w.pid);
  return pids;
}

// Submits `n` jobs with the callback API (many outstanding) and waits for every outcome.
// Returns the failures.
std::size_t run_pipelined(procpool::Pool& pool, std::size_t n, const char* job = "noop") {
  std::atomic<std::size_t> done{0};
  std::atomic<std::size_t> failed{0};
  for (std::size_t i = 0; i < n; ++i) {
    pool.submit(job, procpool::Bytes{}, procpool::SubmitOptions{},
                [&done, &failed, n](procpool::JobResult r) {
                  if (!r.ok()) failed.fetch_add(1, std::memory_order_relaxed);
                  if (done.fetch_add(1, std::memory_order_acq_rel) + 1 == n) done.notify_all();
                });
  }
  for (std::size_t d = done.load(); d != n; d = done.load())
    done.wait(d);
  return failed.load();
}

// Submits `n` no-op jobs with submit_batch in batches of 1,000 and waits for every outcome, through
// the callback form or (`futures`) through futures read in order. Returns the failures.
std::size_t run_batched(procpool::Pool& pool, std::size_t n, bool futures = false) {
  constexpr std::size_t batch = 1000;
  if (futures) {
    std::vector<procpool::JobFuture> all;
    all.reserve(n);
    for (std::size_t i = 0; i < n; i += batch) {
      auto part = pool.submit_batch("noop", std::vector<procpool::Bytes>(std::min(batch, n - i)));
      std::move(part.begin(), part.end(), std::back_inserter(all));
    }
    std::size_t failed = 0;
    for (auto& f : all)
      failed += f.get().ok() ? 0 : 1;
    return failed;
  }
  std::atomic<std::size_t> done{0};
  std::atomic<std::size_t> failed{0};
  for (std::size_t i = 0; i < n; i += batch) {
    pool.submit_batch("noop", std::vector<procpool::Bytes>(std::min(batch, n - i)), {},
                      [&done, &failed, n](std::size_t, procpool::JobResult r) {
                        if (!r.ok()) failed.fetch_add(1, std::memory_order_relaxed);
                        if (done.fetch_add(1, std::memory_order_acq_rel) + 1 == n) {
                          done.notify_all();
                        }
                      });
  }
  for (std::size_t d = done.load(); d != n; d = done.load())
    done.wait(d);
  return failed.load();
}

void check_ok(const procpool::JobResult& r) {
  if (!r.ok()) throw std::runtime_error("a benchmark job failed: " + r.error().message);
}

// Runs `n` no-op jobs one at a time (a warm-up).
void run_noops_one_at_a_time(procpool::Pool& pool, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i)
    check_ok(pool.submit("noop", procpool::Bytes{}).get());
}

// The two ways to run one job and wait for it.
enum class RoundTripApi { call, submit_get };

// Times ns.size() no-op jobs run one at a time: each round trip in nanoseconds.
void time_noop_round_trips(procpool::Pool& pool, std::vector<double>& ns, RoundTripApi api) {
  for (double& sample : ns) {
    std::int64_t t0 = bench::now_ns();
    procpool::JobResult r = api == RoundTripApi::call
                                ? pool.call("noop", procpool::Bytes{})
                                : pool.submit("noop", procpool::Bytes{}).get();
    sample = static_cast<double>(bench::now_ns() - t0);
    check_ok(r);
  }
}

// ---- baselines -------------------------------------------------------------------------------

/// Adds the row of the memcpy timings taken beside `row`, just before it in the table, and makes it
/// that row's baseline; `copies` says which buffers they copied.
void add_memcpy_beside(Row& row, std::vector<double> ms,
                       std::string_view copies = "a source, into one private buffer, into another");

struct PingPongFigures {
  std::vector<double> p50_us, p99_us, per_s;
};

void run_native_baselines(const Config& cfg, const std::string& self_exe) {
  std::vector<Placement> placements = {Placement::same_core, Placement::unpinned};
  if (bench::usable_cpus() >= 2) placements.insert(placements.begin() + 1, Placement::cross_core);
  for (PingPongKind kind :
       {PingPongKind::futex, PingPongKind::eventfd, PingPongKind::pipe, PingPongKind::spin}) {
    for (Placement pl : placements) {
      // Polling on one CPU waits for the scheduler's tick, and unpinned the two may share one.
      if (kind == PingPongKind::spin && pl != Placement::cross_core) continue;
      log_progress(
          fmt::format("baseline: {} ping-pong, {}", bench::to_string(kind), bench::to_string(pl)));
      PingPongFigures f;
      std::vector<double> switches;
      for (std::size_t rep = 0; rep < cfg.reps; ++rep) {
        bench::PingPongRun run = bench::ping_pong(kind, pl, cfg.pingpong_n, cfg.pingpong_warmup);
        f.p50_us.push_back(bench::percentile(run.rtt_ns, 50) / 1e3);
        f.p99_us.push_back(bench::percentile(run.rtt_ns, 99) / 1e3);
        f.per_s.push_back(static_cast<double>(cfg.pingpong_n) / (run.elapsed_ns / 1e9));
        switches.push_back(run.switches_per_round_trip);
      }
      std::string key = fmt::format("{}_{}", bench::to_string(kind),
                                    pl == Placement::same_core    ? "same_core"
                                    : pl == Placement::cross_core ? "cross_core"
                                                                  : "unpinned");
      std::string label =
          fmt::format("{} ping-pong round trip, {}", bench::to_string(kind), bench::to_string(pl));
      add_row("baseline." + key + ".p50", "baselines", label + ", p50", "us", f.p50_us);
      add_row("baseline." + key + ".p99", "baselines", label + ", p99", "us", f.p99_us);
      add_row("baseline." + key + ".per_s", "baselines", label + ", round trips/s", "1/s", f.per_s);
      if (kind == PingPongKind::futex) {
        add_row("baseline." + key + ".switches", "baselines",
                label + ", context switches per round trip (both processes)", "1/rt", switches);
      }
    }
  }

  log_progress("baseline: memcpy 16 MiB");
  std::vector<double> one, two;
  for (std::size_t rep = 0; rep < cfg.reps; ++rep) {
    double m = bench::median(bench::memcpy_ns(16 * mib, cfg.memcpy_samples)) / 1e6;
    one.push_back(m);
    two.push_back(2 * m);
  }
  add_row("baseline.memcpy_16MiB", "baselines", "memcpy 16 MiB (warm buffers)", "ms", one);
  add_row("baseline.memcpy_16MiB_x2", "baselines", "memcpy 16 MiB in + 16 MiB out (2 x memcpy)",
          "ms", two);

  log_progress("baseline: 16 MiB handed to another process and back");
  std::vector<double> handoff_ms, beside_ms;
  for (std::size_t rep = 0; rep < cfg.reps; ++rep) {
    bench::HandoffRun run = bench::handoff(16 * mib, cfg.payload_samples);
    handoff_ms.push_back(bench::median(run.handoff_ms));
    beside_ms.push_back(bench::median(run.memcpy_ms));
  }
  Row& handoff =
      add_row("baseline.handoff_16MiB", "baselines",
              "16 MiB written, handed to another process (futex), copied there", "ms", handoff_ms);
  handoff.note =
      "no library: the parent writes a shared input, wakes a forked child, which copies it into a "
      "shared output and wakes the parent; unpinned; the floor of the zero-copy row";
  add_memcpy_beside(handoff, std::move(beside_ms),
                    "the same two copies made by the parent, into the same shared buffers");

  log_progress("baseline: spawn to ready");
  std::vector<double> p50, p99;
  for (std::size_t rep = 0; rep < cfg.reps; ++rep) {
    auto ns = bench::spawn_to_ready_ns(self_exe, cfg.spawn_samples);
    p50.push_back(bench::percentile(ns, 50) / 1e6);
    p99.push_back(bench::percentile(ns, 99) / 1e6);
  }
  add_row("baseline.spawn_ready.p50", "baselines",
          "posix_spawn of this binary until it writes a byte, p50", "ms", p50);
  add_row("baseline.spawn_ready.p99", "baselines",
          "posix_spawn of this binary until it writes a byte, p99", "ms", p99);
}

std::string python_note;
std::string python_version;

void run_python(const Config& cfg) {
  if (!cfg.python) {
    python_note = "Python baselines skipped (--no-python)";
    return;
  }
  log_progress("baseline: Python (ProcessPoolExecutor, multiprocessing.Pool, 2 workers)");
  bench::PythonResults py = bench::run_python_baselines(cfg.py);
  python_note = py.note;
  python_version = py.version;
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
    Row& r = add_row(std::string("baseline.python.") + l.metric, "baselines", l.what, l.unit,
                     it->second);
    if (std::string(l.metric).find("per_child1") != std::string::npos ||
        std::string(l.metric).find("perchild1") != std::string::npos) {
      if (std::isnan(best_recycle) || r.figure > best_recycle) best_recycle = r.figure;
    }
  }
  if (!std::isnan(best_recycle)) {
    add_row("baseline.python.max_tasks_per_child1_best_per_s", "baselines",
            "Python max_tasks_per_child=1, best of the variants above, jobs/s", "1/s",
            {best_recycle});
  }
}

// ---- procpool measurements -------------------------------------------------------------------

struct SwitchCount {
  std::uint64_t caller = 0, supervisor = 0, worker = 0;
};

/// Context switches so far of this thread (the caller), of this process's other threads (the
/// supervisor's: the harness runs no other thread while it measures) and of the worker `pid`.
SwitchCount count_switches(int worker_pid) {
  SwitchCount count;
  const auto caller = static_cast<pid_t>(syscall(SYS_gettid));
  for (const auto& [tid, switches] : bench::context_switches_of(getpid()))
    (tid == caller ? count.caller : count.supervisor) += switches;
  for (const auto& [tid, switches] : bench::context_switches_of(worker_pid))
    count.worker += switches;
  return count;
}

// The figures of one API's round trips, one entry per repetition.
struct RoundTripFigures {
  std::vector<double> p50, p99, total_switches, caller_switches, supervisor_switches,
      worker_switches;
};

void time_round_trip_rep(procpool::Pool& pool, int worker, RoundTripApi api,
                         std::vector<double>& ns, RoundTripFigures& f) {
  SwitchCount before = count_switches(worker);
  time_noop_round_trips(pool, ns, api);
  SwitchCount after = count_switches(worker);
  f.p50.push_back(bench::percentile(ns, 50) / 1e3);
  f.p99.push_back(bench::percentile(ns, 99) / 1e3);
  auto per_job = [&](std::uint64_t SwitchCount::*field) {
    return static_cast<double>(after.*field - before.*field) / static_cast<double>(ns.size());
  };
  f.caller_switches.push_back(per_job(&SwitchCount::caller));
  f.supervisor_switches.push_back(per_job(&SwitchCount::supervisor));
  f.worker_switches.push_back(per_job(&SwitchCount::worker));
  f.total_switches.push_back(f.caller_switches.back() + f.supervisor_switches.back() +
                             f.worker_switches.back());
}

void measure_round_trip(const Config& cfg, Placement pl, const std::string& key) {
  log_progress(fmt::format("procpool: no-op round trip, idle pool, {}", bench::to_string(pl)));
  if (pl == Placement::unpinned) {
    bench::unpin_self();
  } else {
    bench::pin_self(0);  // the supervisor thread and the workers inherit this
  }
  RoundTripFigures by_call, by_submit;
  {
    procpool::Pool pool(pool_options(1));
    settle(pool, 1);
    if (pl == Placement::cross_core) {
      for (int pid : worker_pids(pool))
        bench::pin_pid(pid, 1);
    }
    run_noops_one_at_a_time(pool, cfg.rtt_warmup);
    std::vector<double> ns(cfg.rtt_n);
    const int worker = worker_pids(pool).at(0);
    // The two APIs alternate on the same pool, so that both see the same machine.
    for (std::size_t rep = 0; rep < cfg.reps; ++rep) {
      time_round_trip_rep(pool, worker, RoundTripApi::call, ns, by_call);
      time_round_trip_rep(pool, worker, RoundTripApi::submit_get, ns, by_submit);
    }
  }
  bench::unpin_self();
  std::string where = bench::to_string(pl);
  std::string place_note =
      pl == Placement::same_core
          ? "caller, supervisor thread and worker all pinned to CPU 0 (baseline: both processes "
            "on CPU 0)"
      : pl == Placement::cross_core
          ? "caller and supervisor thread on CPU 0, worker on CPU 1 (baseline: parent on CPU 0, "
            "child on CPU 1)"
          : "no pinning, 1 worker";
  auto add_rows = [&](const std::string& id, const std::string& api, const RoundTripFigures& f,
                      bool targets) {
    Row& a =
        add_row(id + ".p50", "procpool",
                "no-op job round trip, " + api + ", idle pool, " + where + ", p50", "us", f.p50);
    set_baseline(a, "baseline.futex_" + key + ".p50");
    if (targets && pl != Placement::unpinned) {
      set_target(a, TargetKind::ratio_max, 1.25, "<= 1.25x futex");
    }
    a.note = place_note;
    Row& b =
        add_row(id + ".p99", "procpool",
                "no-op job round trip, " + api + ", idle pool, " + where + ", p99", "us", f.p99);
    set_baseline(b, id + ".p50");
    if (targets && pl != Placement::unpinned) {
      set_target(b, TargetKind::ratio_max, 3, "<= 3x own p50");
    }
    if (pl == Placement::cross_core) {
      double spin_p50 = figure_of("baseline.spin_cross_core.p50");
      double spin_p99 = figure_of("baseline.spin_cross_core.p99");
      if (!std::isnan(spin_p50) && spin_p50 > 0) {
        b.note = fmt::format(
            "the raw polled ping-pong across cores (no system call) in this run: p50 {} us, p99 "
            "{} us, {:.2f}x its p50",
            num(spin_p50), num(spin_p99), spin_p99 / spin_p50);
      }
    }
    Row& c = add_row(id + ".switches", "procpool",
                     "no-op job round trip, " + api + ", idle pool, " + where +
                         ", context switches per round trip (caller, supervisor, worker)",
                     "1/rt", f.total_switches);
    set_baseline(c, "baseline.futex_" + key + ".switches");
    c.note = fmt::format(
        "medians per round trip: caller thread {}, supervisor thread {}, worker {} (voluntary + "
        "involuntary, /proc/<pid>/task/*/status)",
        num(bench::median(f.caller_switches)), num(bench::median(f.supervisor_switches)),
        num(bench::median(f.worker_switches)));
  };
  add_rows("procpool.rtt_" + key, "call()", by_call, true);
  add_rows("procpool.rtt_submit_get_" + key, "submit().get()", by_submit, false);
}

void measure_blocking(const Config& cfg) {
  log_progress("procpool: one-at-a-time blocking submit, 2 workers");
  std::vector<double> per_s, call_per_s;
  {
    procpool::Pool pool(pool_options(2));
    settle(pool, 2);
    run_noops_one_at_a_time(pool, cfg.rtt_warmup);
    std::vector<double> ns(cfg.blocking_n);
    auto rate = [&] {
      double total = 0;
      for (double sample : ns)
        total += sample;
      return static_cast<double>(ns.size()) / (total / 1e9);
    };
    // Alternately with call(), on the same pool.
    for (std::size_t rep = 0; rep < cfg.reps; ++rep) {
      time_noop_round_trips(pool, ns, RoundTripApi::submit_get);
      per_s.push_back(rate());
      time_noop_round_trips(pool, ns, RoundTripApi::call);
      call_per_s.push_back(rate());
    }
  }
  Row& r = add_row("procpool.blocking_submit_per_s", "procpool",
                   "one-at-a-time blocking submit().get(), 2 workers, unpinned", "1/s", per_s);
  set_baseline(r, "baseline.futex_unpinned.per_s");
  set_target(r, TargetKind::abs_min, 50'000, ">= 50,000/s");
  r.note = "baseline: raw futex ping-pong round trips/s, unpinned";
  Row& c = add_row("procpool.blocking_call_per_s", "procpool",
                   "one-at-a-time blocking call(), 2 workers, unpinned", "1/s", call_per_s);
  set_baseline(c, "procpool.blocking_submit_per_s");
  c.note = "timed alternately with the row above, on the same pool; baseline: that row";
  if (find_row("baseline.python.executor_submit_result_per_s") != nullptr) {
    Row& p = add_row("procpool.blocking_submit_vs_python", "procpool",
                     "one-at-a-time blocking submit vs Python submit().result()", "1/s", per_s);
    set_baseline(p, "baseline.python.executor_submit_result_per_s");
  }
}

void measure_pipelined(const Config& cfg) {
  log_progress("procpool: pipelined submit, 2 workers (callbacks and futures)");
  std::vector<double> cb_per_s, fut_per_s;
  {
    procpool::Pool pool(pool_options(2));
    settle(pool, 2);
    run_pipelined(pool, cfg.rtt_warmup);
    for (std::size_t rep = 0; rep < cfg.reps; ++rep) {
      std::int64_t t0 = bench::now_ns();
      if (run_pipelined(pool, cfg.pipelined_n) != 0) throw std::runtime_error("pipelined failures");
      cb_per_s.push_back(static_cast<double>(cfg.pipelined_n) /
                         (static_cast<double>(bench::now_ns() - t0) / 1e9));

      std::vector<procpool::JobFuture> futures;
      futures.reserve(cfg.pipelined_n);
      t0 = bench::now_ns();
      for (std::size_t i = 0; i < cfg.pipelined_n; ++i) {
        futures.push_back(pool.submit("noop", procpool::Bytes{}));
      }
      for (auto& f : futures)
        check_ok(f.get());
      fut_per_s.push_back(static_cast<double>(cfg.pipelined_n) /
                          (static_cast<double>(bench::now_ns() - t0) / 1e9));
    }
  }
  // The same jobs through submit_batch, in batches of 1,000: one queue lock and at most one
  // wake-up per batch. Callbacks, then futures read in order.
  std::vector<double> batch_cb_per_s, batch_fut_per_s;
  {
    procpool::Pool pool(pool_options(2));
    settle(pool, 2);
    run_pipelined(pool, cfg.rtt_warmup);
    for (std::size_t rep = 0; rep < cfg.reps; ++rep) {
      for (bool futures : {false, true}) {
        std::int64_t t0 = bench::now_ns();
        if (run_batched(pool, cfg.pipelined_n, futures) != 0) {
          throw std::runtime_error("batch failures");
        }
        (futures ? batch_fut_per_s : batch_cb_per_s)
            .push_back(static_cast<double>(cfg.pipelined_n) /
                       (static_cast<double>(bench::now_ns() - t0) / 1e9));
      }
    }
  }
  Row& c =
      add_row("procpool.batch_callback_per_s", "procpool",
              "small jobs, 2 workers, submit_batch of 1,000 (callbacks)", "1/s", batch_cb_per_s);
  set_baseline(c, "baseline.python.pool_map_chunksize1_per_s");
  set_target(c, TargetKind::abs_min, 1'000'000, ">= 1,000,000/s");
  c.note = "baseline: Python multiprocessing.Pool.map(chunksize=1)";
  Row& d = add_row("procpool.batch_futures_per_s", "procpool",
                   "small jobs, 2 workers, submit_batch of 1,000 (futures, read in order)", "1/s",
                   batch_fut_per_s);
  set_baseline(d, "baseline.python.pool_map_chunksize1_per_s");
  set_target(d, TargetKind::abs_min, 1'000'000, ">= 1,000,000/s");
  d.note = "baseline: Python multiprocessing.Pool.map(chunksize=1)";

  Row& a = add_row("procpool.pipelined_callback_per_s", "procpool",
                   "small jobs, 2 workers, pipelined (Completion callbacks)", "1/s", cb_per_s);
  set_baseline(a, "baseline.python.pool_map_chunksize1_per_s");
  set_target(a, TargetKind::abs_min, 1'000'000, ">= 1,000,000/s");
  a.note = "baseline: Python multiprocessing.Pool.map(chunksize=1); one submit() per job";
  Row& b = add_row("procpool.pipelined_futures_per_s", "procpool",
                   "small jobs, 2 workers, pipelined (all futures, then get)", "1/s", fut_per_s);
  set_baseline(b, "baseline.python.executor_pipelined_per_s");
  set_target(b, TargetKind::abs_min, 1'000'000, ">= 1,000,000/s");
  b.note = "baseline: Python ProcessPoolExecutor, all submitted then wait()";
}

// SpinPolicy on against off, side by side: each repetition runs every scenario once with each
// setting, alternating which goes first, so that drift on a shared machine hits both alike.
struct SpinScenario {
  std::string key;
  std::string what;
  std::size_t callers;
  std::size_t jobs_per_caller;
  std::uint32_t job_cpu_us;  // 0: a no-op job
  bool pipelined;            // one caller, callbacks, all jobs outstanding
  std::size_t max_jobs = 0;  // RecyclePolicy::max_jobs (1: a fresh worker per job)
};

double run_spin_scenario(const SpinScenario& sc, bool spin) {
  procpool::PoolOptions options = pool_options(2);
  options.spin.enabled = spin;
  options.recycle.max_jobs = sc.max_jobs;
  procpool::Pool pool(options);
  settle(pool, 2);
  const char* job = sc.job_cpu_us > 0 ? "burn_cpu_us" : "noop";
  procpool::Bytes payload;
  if (sc.job_cpu_us > 0) payload = procpool::Codec<std::uint32_t>::encode(sc.job_cpu_us);
  for (std::size_t i = 0; i < (sc.max_jobs == 1 ? 4 : 100); ++i)
    check_ok(pool.submit(job, payload).get());
  std::int64_t t0 = bench::now_ns();
  if (sc.pipelined) {
    if (run_pipelined(pool, sc.jobs_per_caller) != 0) throw std::runtime_error("spin failures");
  } else {
    std::vector<std::thread> callers;
    std::atomic<std::size_t> failed{0};
    for (std::size_t c = 0; c < sc.callers; ++c) {
      callers.emplace_back([&] {
        for (std::size_t i = 0; i < sc.jobs_per_caller; ++i) {
          if (!pool.submit(job, payload).get().ok()) failed.fetch_add(1);
        }
      });
    }
    for (auto& t : callers)
      t.join();
    if (failed.load() != 0) throw std::runtime_error("spin scenario failures");
  }
  double seconds = static_cast<double>(bench::now_ns() - t0) / 1e9;
  return static_cast<double>(sc.callers * sc.jobs_per_caller) / seconds;
}

// The p50 round trip of a no-op job with 1 worker, the caller, the supervisor thread and the
// worker all on CPU 0: where a poller has no free CPU at all.
double spin_same_core_p50(const Config& cfg, bool spin) {
  bench::pin_self(0);  // the supervisor thread and the worker inherit this
  procpool::PoolOptions options = pool_options(1);
  options.spin.enabled = spin;
  std::vector<double> ns(cfg.rtt_n);
  {
    procpool::Pool pool(options);
    settle(pool, 1);
    run_noops_one_at_a_time(pool, cfg.rtt_warmup);
    time_noop_round_trips(pool, ns, RoundTripApi::submit_get);
  }
  bench::unpin_self();
  return bench::percentile(ns, 50) / 1e3;
}

// Three times the repetitions of the other rows: on this machine one repetition's on/off pair
// differed by up to 25% either way (0.62x-1.25x in three full runs), against a 5% allowance.
constexpr std::size_t spin_reps_factor = 3;

void measure_spin(const Config& cfg) {
  log_progress("procpool: SpinPolicy on vs off, side by side");
  const std::size_t reps = cfg.reps * spin_reps_factor;
  std::vector<double> same_core_on, same_core_off;
  for (std::size_t rep = 0; rep < reps; ++rep) {
    bool first = rep % 2 == 0;
    (first ? same_core_on : same_core_off).push_back(spin_same_core_p50(cfg, first));
    (first ? same_core_off : same_core_on).push_back(spin_same_core_p50(cfg, !first));
  }
  Row& off_row =
      add_row("procpool.spin.rtt_same_core.off.p50", "procpool",
              "1 worker, all on CPU 0, no-op round trip p50, SpinPolicy off", "us", same_core_off);
  off_row.note = "the plain sleeping path, measured alternately with the row below";
  Row& on_row =
      add_row("procpool.spin.rtt_same_core.on.p50", "procpool",
              "1 worker, all on CPU 0, no-op round trip p50, SpinPolicy on", "us", same_core_on);
  set_baseline(on_row, "procpool.spin.rtt_same_core.off.p50");
  set_target(on_row, TargetKind::ratio_max, 1.05, "<= 1.05x off");
  on_row.note = "no CPU is free for a poller here: spinning must not cost (0.05 for noise)";

  std::vector<SpinScenario> scenarios = {
      {"blocking_1caller", "1 caller, blocking no-op jobs", 1, cfg.spin_blocking_n, 0, false},
      {"blocking_4callers", "4 callers, blocking no-op jobs (CPUs oversubscribed)", 4,
       cfg.spin_blocking_n / 4, 0, false},
      {"busy_2callers", "2 callers, blocking 200 us CPU jobs (both CPUs busy)", 2, cfg.spin_busy_n,
       200, false},
      {"pipelined", "1 caller, pipelined no-op jobs (callbacks)", 1, cfg.pipelined_n, 0, true},
      {"max_jobs1", "max_jobs = 1, pipelined no-op jobs (a process start per job)", 1,
       cfg.max_jobs1_n, 0, true, 1},
  };
  std::vector<std::vector<double>> on(scenarios.size()), off(scenarios.size());
  for (std::size_t rep = 0; rep < reps; ++rep) {
    for (std::size_t i = 0; i < scenarios.size(); ++i) {
      bool first = rep % 2 == 0;  // SpinPolicy::enabled of the first run
      (first ? on : off)[i].push_back(run_spin_scenario(scenarios[i], first));
      (first ? off : on)[i].push_back(run_spin_scenario(scenarios[i], !first));
    }
  }
  for (std::size_t i = 0; i < scenarios.size(); ++i) {
    const SpinScenario& sc = scenarios[i];
    std::string base = "procpool.spin." + sc.key;
    Row& b = add_row(base + ".off_per_s", "procpool", "2 workers, " + sc.what + ", SpinPolicy off",
                     "1/s", off[i]);
    b.note = "the plain sleeping path, measured alternately with the row below";
    Row& a = add_row(base + ".on_per_s", "procpool", "2 workers, " + sc.what + ", SpinPolicy on",
                     "1/s", on[i]);
    set_baseline(a, base + ".off_per_s");
    set_target(a, TargetKind::ratio_min, 0.95, ">= 0.95x off");
    a.note = "adaptive spinning must never lose to the sleeping path (0.05 for noise)";
  }
}

// Syscall entries per job across host and workers, from perf tracepoints inherited by the pool's
// threads and workers: (count(big run) - count(small run)) / (big - small), so start-up and
// shutdown cancel out.
void measure_syscalls(const Config& cfg) {
  log_progress("procpool: wake-up syscalls per job (perf tracepoints)");
  const std::vector<std::string> names = {"futex",      "read",        "write",
                                          "epoll_wait", "epoll_pwait", "epoll_pwait2"};
  auto count = [&](std::size_t n, bool batched) {
    std::vector<std::unique_ptr<bench::SyscallCounter>> counters;
    for (const auto& name : names)
      counters.push_back(std::make_unique<bench::SyscallCounter>(name));
    if (!counters[0]->ok()) return std::vector<double>{};
    std::vector<double> before, out;
    for (auto& c : counters)
      before.push_back(static_cast<double>(c->read()));
    {
      procpool::Pool pool(pool_options(2));
      settle(pool, 2);
      if (batched) {
        run_batched(pool, n);
      } else {
        run_pipelined(pool, n);
      }
    }  // reaps the workers and joins the supervisor, so their counts are folded in
    for (std::size_t i = 0; i < counters.size(); ++i) {
      out.push_back(static_cast<double>(counters[i]->read()) - before[i]);
    }
    return out;
  };
  for (bool batched : {false, true}) {
    std::string id =
        batched ? "procpool.wake_syscalls_per_job_batch" : "procpool.wake_syscalls_per_job";
    std::string how =
        batched ? "submit_batch of 1,000, callbacks" : "pipelined submit(), callbacks";
    std::vector<double> small = count(cfg.syscall_small_n, batched);
    std::vector<double> big = count(cfg.syscall_big_n, batched);
    if (small.empty() || big.empty()) {
      Row& r = add_row(id, "procpool", "futex + eventfd syscalls per job, " + how + ", 2 workers",
                       "1/job", {});
      set_target(r, TargetKind::abs_max, 0.05, "<= 0.05/job");
      r.note =
          "not measured: perf tracepoints syscalls:sys_enter_* unavailable (needs root or "
          "perf_event_paranoid <= -1 and tracefs)";
      return;
    }
    double jobs = static_cast<double>(cfg.syscall_big_n - cfg.syscall_small_n);
    std::vector<double> per_job;
    for (std::size_t i = 0; i < names.size(); ++i)
      per_job.push_back((big[i] - small[i]) / jobs);
    Row& r =
        add_row(id, "procpool", "futex + read + write syscalls per job, " + how + ", 2 workers",
                "1/job", {per_job[0] + per_job[1] + per_job[2]});
    set_target(r, TargetKind::abs_max, 0.05, "<= 0.05/job");
    r.note = fmt::format(
        "one measurement (not repeated); futex {:.3f}, read {:.3f}, write {:.3f} per job (eventfd "
        "wake-ups are writes; reads include the /proc/<pid>/statm reading)",
        per_job[0], per_job[1], per_job[2]);
    add_row(id + "_epoll", "procpool",
            "epoll_wait + epoll_pwait + epoll_pwait2 syscalls per job, " + how + ", 2 workers",
            "1/job", {per_job[3] + per_job[4] + per_job[5]});
  }
}

// The 2 x memcpy baseline again, timed right before each sample of a payload row: the baseline
// measured at the start of the run drifts by up to 1.8x over the minutes until these rows run
// (docs/benchmarks.md), which is as large as what the row is compared for.
class MemcpyBeside {
 public:
  MemcpyBeside() : source_(16 * mib, std::byte{0x5a}), in_(16 * mib), out_(16 * mib) {
    sample_ms();  // the pages exist from here on
  }
  /// 16 MiB copied in, then out again, as an echo job moves it; from a flushed cache.
  double sample_ms() {
    flush_();
    std::int64_t t0 = bench::now_ns();
    std::memcpy(in_.data(), source_.data(), source_.size());
    std::memcpy(out_.data(), in_.data(), in_.size());
    return static_cast<double>(bench::now_ns() - t0) / 1e6;
  }
  void flush_cache() { flush_(); }

 private:
  std::vector<std::byte> source_, in_, out_;
  CacheFlush flush_;
};

void add_memcpy_beside(Row& row, std::vector<double> ms, std::string_view copies) {
  const std::ptrdiff_t at = &row - rows.data();
  const std::string baseline_id = "baseline.memcpy_16MiB_x2.beside." + row.id;
  // add_row appends (and may move `row`): then rotate the new row into place before it.
  add_row(baseline_id, row.section, "2 x memcpy 16 MiB, timed alternately with the row below", "ms",
          std::move(ms));
  std::rotate(rows.begin() + at, rows.end() - 1, rows.end());
  Row& measured = rows[static_cast<std::size_t>(at) + 1];
  set_baseline(measured, baseline_id);
  if (!measured.note.empty()) measured.note += "; ";
  measured.note += fmt::format(
      "baseline: 2 x memcpy ({}) timed before each sample (the start-of-run figure drifts); each "
      "sample of either from a flushed cache",
      copies);
  double start_of_run = figure_of("baseline.memcpy_16MiB_x2");
  if (!std::isnan(start_of_run)) {
    measured.note += fmt::format("; {:.2f}x the start-of-run 2 x memcpy ({:.2f} ms)",
                                 measured.figure / start_of_run, start_of_run);
  }
}

// `job`: "owning_echo" returns the payload it owns (JobRegistry::add_owning), "echo" a copy of it.
void measure_payload(const Config& cfg, std::size_t ring_bytes, const std::string& job,
                     const std::string& id) {
  log_progress(
      fmt::format("procpool: 16 MiB in + 16 MiB out, ring {} MiB, {}", ring_bytes / mib, job));
  std::vector<double> ms, memcpy_ms;
  {
    procpool::PoolOptions o = pool_options(1);
    o.ring_bytes = ring_bytes;
    procpool::Pool pool(o);
    settle(pool, 1);
    procpool::Bytes source(16 * mib, std::byte{0x5a});
    check_ok(pool.submit(job, procpool::Bytes(source)).get());  // warm-up
    MemcpyBeside beside;
    for (std::size_t rep = 0; rep < cfg.reps; ++rep) {
      std::vector<double> samples, base;
      for (std::size_t i = 0; i < cfg.payload_samples; ++i) {
        procpool::Bytes payload(source);  // copied outside the timed region
        base.push_back(beside.sample_ms());
        beside.flush_cache();
        std::int64_t t0 = bench::now_ns();
        procpool::JobResult r = pool.submit(job, std::move(payload)).get();
        samples.push_back(static_cast<double>(bench::now_ns() - t0) / 1e6);
        check_ok(r);
        if (r.value() != source) throw std::runtime_error(job + " returned other bytes");
      }
      ms.push_back(bench::median(samples));
      memcpy_ms.push_back(bench::median(base));
    }
  }
  const bool owning = job == "owning_echo";
  Row& r = add_row(id, "procpool",
                   fmt::format("16 MiB in + 16 MiB out ({}), ring_bytes {} MiB",
                               owning ? "echo owning its payload" : "echo copying its payload",
                               ring_bytes / mib),
                   "ms", ms);
  if (ring_bytes == (std::size_t{1} << 20) && owning) {
    set_target(r, TargetKind::ratio_max, 2, "<= 2x memcpy");
    r.note =
        "default ring_bytes; the handler (JobRegistry::add_owning) returns the payload it was "
        "given: four copies, into and out of each ring";
  } else if (!owning) {
    r.note = "the handler returns a new Bytes (JobRegistry::add): a fifth copy, in the worker";
  }
  add_memcpy_beside(r, std::move(memcpy_ms));
}

// Retiring event -> the next ready event, one per recycle. `spawn_ms` gets retiring -> spawned (the
// supervisor creating the segment and launching the process) and `start_ms` spawned -> ready (the
// new process loading, attaching and saying hello).
// With `caps`, the worker runs in a memory cgroup of its own (PoolOptions::worker_cgroups).
std::vector<double> recycle_latencies_ms(std::size_t n, procpool::StartMode mode,
                                         std::vector<double>* spawn_ms = nullptr,
                                         std::vector<double>* start_ms = nullptr,
                                         const procpool::MemoryCgroupOptions* caps = nullptr) {
  std::mutex m;
  std::vector<std::pair<procpool::EventType, std::int64_t>> events;
  procpool::PoolOptions o = pool_options(1);
  o.recycle.max_jobs = 1;
  o.start_mode = mode;
  if (caps) o.worker_cgroups = *caps;
  o.on_event = [&](const procpool::PoolEvent& e) {
    if (e.type == procpool::EventType::retiring || e.type == procpool::EventType::ready ||
        e.type == procpool::EventType::spawned) {
      std::int64_t t = bench::now_ns();
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

// Row keys and labels of the two StartModes.
std::string mode_key(procpool::StartMode mode) {
  return mode == procpool::StartMode::fork_server ? "_fork_server" : "";
}
std::string mode_label(procpool::StartMode mode) {
  return mode == procpool::StartMode::fork_server ? ", StartMode::fork_server" : "";
}

void measure_recycle(const Config& cfg, bool big_host, procpool::StartMode mode) {
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
    p50.push_back(bench::percentile(ms, 50));
    p99.push_back(bench::percentile(ms, 99));
  }
  std::string suffix = std::string(big_host ? ", 1 GiB host" : "") + mode_label(mode);
  std::string key = "procpool.recycle" + mode_key(mode) + (big_host ? "_1GiB_host" : "");
  Row& a = add_row(key + ".p50", "procpool",
                   "recycle: retiring event -> replacement ready, p50" + suffix, "ms", p50);
  set_baseline(a, "baseline.spawn_ready.p50");
  set_target(a, TargetKind::abs_max, 2, "<= 2 ms");
  a.note = fmt::format(
      "1 worker, max_jobs = 1, {} recycles per repetition; host RSS {:.0f} MiB; medians: retiring "
      "-> spawned {:.2f} ms ({}), spawned -> ready {:.2f} ms ({})",
      cfg.recycles_per_rep, static_cast<double>(bench::self_rss_bytes()) / static_cast<double>(mib),
      bench::percentile(spawn_ms, 50),
      mode == procpool::StartMode::fork_server
          ? "segment, then the fork server's fork and answer, while the supervisor goes on"
          : "segment + launch, in the supervisor",
      bench::percentile(start_ms, 50),
      mode == procpool::StartMode::fork_server ? "the forked process attaching"
                                               : "the new process starting");
  Row& b = add_row(key + ".p99", "procpool",
                   "recycle: retiring event -> replacement ready, p99" + suffix, "ms", p99);
  set_baseline(b, "baseline.spawn_ready.p99");
  set_target(b, TargetKind::abs_max, 5, "<= 5 ms");
}

// ---- memory: kernel caps ------------------------------------------------------------------

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
// host created and touched, so that its page is charged to the host, not the worker's cgroup.
class GrowthStamps {
 public:
  GrowthStamps() {
    path_ = fmt::format("/dev/shm/procpool-bench-stamps-{}", ::getpid());
    int fd = ::open(path_.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || ::ftruncate(fd, 4096) != 0) throw std::runtime_error("cannot make " + path_);
    void* at = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ::close(fd);
    if (at == MAP_FAILED) throw std::runtime_error("cannot map " + path_);
    stamps_ = static_cast<std::atomic<std::int64_t>*>(at);
    reset();
  }
  ~GrowthStamps() {
    ::munmap(stamps_, 4096);
    ::unlink(path_.c_str());
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
    o.recycle.rss_hard_limit = memory_cap_bytes;
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
    const std::int64_t outcome = bench::now_ns();
    if (r.ok() || r.error().kind != procpool::ErrorKind::memory_limit) {
      throw std::runtime_error("a job growing past its limit did not end with memory_limit");
    }
    if (stamps.crossed_at() > 0)
      ms.push_back(static_cast<double>(outcome - stamps.crossed_at()) / 1e6);
  }
  return ms;
}

void measure_memory_caps(const Config& cfg) {
  log_progress("procpool: per-worker memory cgroups (recycle cost; limit -> outcome)");
  const std::string why_not = why_no_memory_cgroups();
  if (!why_not.empty()) {
    Row& r = add_row("procpool.recycle_cgroups_added.p50", "procpool",
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
    double plain =
        bench::percentile(recycle_latencies_ms(cfg.recycles_per_rep, procpool::StartMode::exec,
                                               &spawn_without, &start_without),
                          50);
    double capped =
        bench::percentile(recycle_latencies_ms(cfg.recycles_per_rep, procpool::StartMode::exec,
                                               &spawn_with, &start_with, &caps),
                          50);
    without.push_back(plain);
    with.push_back(capped);
    added.push_back(capped - plain);
  }
  add_row("procpool.recycle_no_cgroups_beside.p50", "procpool",
          "recycle: retiring event -> replacement ready, p50 (measured beside the next row)", "ms",
          without);
  Row& w = add_row("procpool.recycle_cgroups.p50", "procpool",
                   "recycle: retiring event -> replacement ready, p50, per-worker memory cgroups",
                   "ms", with);
  set_baseline(w, "procpool.recycle_no_cgroups_beside.p50");
  Row& d = add_row("procpool.recycle_cgroups_added.p50", "procpool",
                   "recycle p50 added by per-worker memory cgroups", "ms", added);
  set_target(d, TargetKind::abs_max, 0.3, "<= +0.3 ms");
  d.note = fmt::format(
      "median over repetitions of (p50 with - p50 without), {} recycles each, alternating; the "
      "cgroup is made before the worker starts and removed after it is reaped; medians of all "
      "recycles without/with: retiring -> spawned {:.3f}/{:.3f} ms, spawned -> ready {:.3f}/{:.3f} "
      "ms",
      cfg.recycles_per_rep, bench::median(spawn_without), bench::median(spawn_with),
      bench::median(start_without), bench::median(start_with));

  const std::size_t jobs = cfg.quick ? 3 : 10;
  std::vector<double> sampled, capped;
  for (std::size_t rep = 0; rep < cfg.reps; ++rep) {
    sampled.push_back(bench::median(limit_to_outcome_ms(jobs, false)));
    capped.push_back(bench::median(limit_to_outcome_ms(jobs, true)));
  }
  add_row("procpool.limit_to_outcome_sampled.p50", "procpool",
          "a job crossing rss_hard_limit -> its memory_limit outcome, p50 (sampled, 250 ms)", "ms",
          sampled);
  Row& k = add_row("procpool.limit_to_outcome_cgroup.p50", "procpool",
                   "a job crossing its memory cgroup cap -> its memory_limit outcome, p50", "ms",
                   capped);
  set_baseline(k, "procpool.limit_to_outcome_sampled.p50");
  k.note = fmt::format(
      "{} jobs per repetition growing by touched 1 MiB steps past a {} MiB limit; the crossing is "
      "stamped by the job (its last step, where the kernel stopped it first)",
      jobs, memory_cap_bytes >> 20);
}

void measure_max_jobs1(const Config& cfg, procpool::StartMode mode) {
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
    std::int64_t t0 = bench::now_ns();
    if (run_pipelined(pool, cfg.max_jobs1_n) != 0) throw std::runtime_error("max_jobs=1 failures");
    per_s.push_back(static_cast<double>(cfg.max_jobs1_n) /
                    (static_cast<double>(bench::now_ns() - t0) / 1e9));
    settle(pool, 2);
  }
  Row& r = add_row("procpool.max_jobs1" + mode_key(mode) + "_per_s", "procpool",
                   "max_jobs = 1, 2 workers, pipelined, jobs/s" + mode_label(mode), "1/s", per_s);
  set_baseline(r, "baseline.python.max_tasks_per_child1_best_per_s");
  set_target(r, TargetKind::abs_min, 800, ">= 800/s");
  r.note = "baseline: best Python max_tasks_per_child=1 variant";
}

void measure_leaks(const Config& cfg) {
  log_progress(fmt::format("procpool: host RSS and fds over {} jobs", cfg.leak_jobs));
  {
    procpool::Pool pool(pool_options(2));
    settle(pool, 2);
    run_pipelined(pool, cfg.leak_warmup);
    settle(pool, 2);
    double rss0 = static_cast<double>(bench::self_rss_bytes());
    double fd0 = static_cast<double>(bench::self_fd_count());
    for (std::size_t done = 0; done < cfg.leak_jobs; done += 100'000) {
      run_pipelined(pool, std::min<std::size_t>(100'000, cfg.leak_jobs - done));
    }
    settle(pool, 2);
    double rss1 = static_cast<double>(bench::self_rss_bytes());
    double fd1 = static_cast<double>(bench::self_fd_count());
    Row& a = add_row("procpool.host_rss_growth_jobs", "procpool",
                     fmt::format("host RSS growth over {} jobs", cfg.leak_jobs), "MiB",
                     {(rss1 - rss0) / static_cast<double>(mib)});
    set_target(a, TargetKind::abs_max, 1, "<= 1 MiB");
    a.note = fmt::format("one run; {:.1f} -> {:.1f} MiB after a {}-job warm-up", rss0 / mib,
                         rss1 / mib, cfg.leak_warmup);
    if (cfg.quick) a.note += "; --quick runs far fewer jobs than the target's 1,000,000";
    Row& b = add_row("procpool.host_fd_change_jobs", "procpool",
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
    double rss0 = static_cast<double>(bench::self_rss_bytes());
    double fd0 = static_cast<double>(bench::self_fd_count());
    run_pipelined(pool, cfg.leak_recycles);
    settle(pool, 2);
    double rss1 = static_cast<double>(bench::self_rss_bytes());
    double fd1 = static_cast<double>(bench::self_fd_count());
    Row& a = add_row("procpool.host_rss_growth_recycles", "procpool",
                     fmt::format("host RSS growth over {} recycles", cfg.leak_recycles), "MiB",
                     {(rss1 - rss0) / static_cast<double>(mib)});
    set_target(a, TargetKind::abs_max, 1, "<= 1 MiB");
    a.note = fmt::format("one run; {:.1f} -> {:.1f} MiB after 20 recycles", rss0 / mib, rss1 / mib);
    if (cfg.quick) a.note += "; --quick runs far fewer recycles than the target's 10,000";
    Row& b = add_row("procpool.host_fd_change_recycles", "procpool",
                     fmt::format("host fd count change over {} recycles", cfg.leak_recycles), "fds",
                     {fd1 - fd0});
    set_target(b, TargetKind::abs_max, 0, "unchanged");
    b.note = fmt::format("{:.0f} -> {:.0f}", fd0, fd1);
  }
}

void measure_idle(const Config& cfg) {
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
      auto v = ticks ? bench::cpu_ticks_of(pid) : bench::cpu_ns_of(pid);
      if (!v) throw std::runtime_error("a worker of the idle pool went away");
      total += static_cast<double>(*v);
    }
    return total;
  };
  for (std::size_t rep = 0; rep < cfg.idle_reps; ++rep) {
    double ns0 = read_all(false), t0 = read_all(true);
    std::int64_t w0 = bench::now_ns();
    std::this_thread::sleep_for(std::chrono::duration<double>(cfg.idle_seconds));
    double ns1 = read_all(false), t1 = read_all(true);
    double wall = static_cast<double>(bench::now_ns() - w0);
    pct_ns.push_back((ns1 - ns0) / wall * 100);
    pct_ticks.push_back((t1 - t0) / ticks_per_s / (wall / 1e9) * 100);
  }
  Row& a = add_row(
      "procpool.idle_cpu_pct", "procpool",
      fmt::format("idle pool, 4 workers, {:.0f} s: CPU of host + workers", cfg.idle_seconds),
      "% core", pct_ns);
  set_target(a, TargetKind::abs_max, 0.1, "<= 0.1%");
  a.note = fmt::format(
      "from /proc/<pid>/task/*/schedstat (ns); utime+stime from /proc/<pid>/stat gives {:.3f}% "
      "(10 ms ticks); {} repetition(s)",
      bench::median(pct_ticks), cfg.idle_reps);
}

// The caller writes 16 MiB into a lent input buffer (timed: it is the first of the two copies the
// baseline makes), the in-place handler copies it into a lent output buffer (the second), and the
// caller gets the size back; the output is read where it lies. Timed on a pool whose workers keep
// lent buffers accessible between jobs, with call_in_place (the target row) and
// submit_in_place().get() (an info row), alternately on the same pool; then, on a pool with the
// default, whose workers take their access away after each job, with its own buffers (an info
// row: interleaved, it slowed the baseline's copies by half). The baseline makes
// the same two copies on the calling thread, from the same source into the same two lent buffers,
// so that they differ only in where the second copy runs and in what procpool does around it;
// each sample of any of them starts from a flushed cache.
void zero_copy_row(const Config& cfg) {
  log_progress("procpool: 16 MiB in + 16 MiB out through lent buffers (call_in_place)");
  std::vector<double> call_ms, submit_ms, revoked_ms, memcpy_ms;
  {
    procpool::PoolOptions kept_options = pool_options(1);
    kept_options.lent_buffers_after_job = procpool::LentBuffersAfterJob::kept_accessible;
    procpool::Pool kept(kept_options);
    procpool::Pool revoking(pool_options(1));
    settle(kept, 1);
    settle(revoking, 1);
    procpool::Bytes source(16 * mib, std::byte{0x5a});
    for (std::size_t i = 0; i < source.size(); i += 4096)
      source[i] = std::byte(i >> 12);
    procpool::LentBuffer input = kept.lend(16 * mib);
    procpool::LentBuffer output = kept.lend(16 * mib);
    const std::span<std::byte> in = input.bytes(), out = output.bytes();
    procpool::LentBuffer revoking_input = revoking.lend(16 * mib);
    procpool::LentBuffer revoking_output = revoking.lend(16 * mib);
    CacheFlush flush;
    // One sample of the job from a flushed cache, its output checked: the output is wiped first,
    // since the baseline (or the job before) left the right bytes in it.
    auto job_ms = [&](procpool::Pool& pool, bool call, const procpool::LentBuffer& job_input,
                      const procpool::LentBuffer& job_output) {
      const std::span<std::byte> job_in = job_input.bytes(), job_out = job_output.bytes();
      std::memset(job_out.data(), 0, job_out.size());
      flush();
      std::int64_t t0 = bench::now_ns();
      std::memcpy(job_in.data(), source.data(), source.size());
      procpool::Result<std::uint64_t> written =
          call ? pool.call_in_place("in_place_echo", job_input, job_output)
               : pool.submit_in_place("in_place_echo", job_input, job_output).get();
      double elapsed = static_cast<double>(bench::now_ns() - t0) / 1e6;
      if (!written.ok())
        throw std::runtime_error("in-place echo failed: " + written.error().message);
      if (written.value() != 16 * mib ||
          std::memcmp(job_out.data(), source.data(), source.size()) != 0) {
        throw std::runtime_error("in-place echo: the output differs from the input");
      }
      return elapsed;
    };
    auto baseline_ms = [&] {
      flush();
      std::int64_t t0 = bench::now_ns();
      std::memcpy(in.data(), source.data(), source.size());
      std::memcpy(out.data(), in.data(), in.size());
      return static_cast<double>(bench::now_ns() - t0) / 1e6;
    };
    // Warm-up: the buffers' pages exist from here on, in all three processes, and each worker's
    // job time is known (it decides whether call_in_place hands the job over directly).
    for (int i = 0; i < 3; ++i) {
      job_ms(kept, true, input, output);
      job_ms(revoking, true, revoking_input, revoking_output);
    }
    for (std::size_t rep = 0; rep < cfg.reps; ++rep) {
      std::vector<double> calls, submits, base;
      for (std::size_t i = 0; i < cfg.payload_samples; ++i) {
        base.push_back(baseline_ms());
        calls.push_back(job_ms(kept, true, input, output));
        submits.push_back(job_ms(kept, false, input, output));
      }
      call_ms.push_back(bench::median(calls));
      submit_ms.push_back(bench::median(submits));
      memcpy_ms.push_back(bench::median(base));
    }
    for (std::size_t rep = 0; rep < cfg.reps; ++rep) {
      std::vector<double> revoked;
      for (std::size_t i = 0; i < cfg.payload_samples; ++i)
        revoked.push_back(job_ms(revoking, true, revoking_input, revoking_output));
      revoked_ms.push_back(bench::median(revoked));
    }
  }
  Row& r = add_row("procpool.zero_copy_16MiB", "procpool",
                   "16 MiB in + out through lent buffers (call_in_place)", "ms", call_ms);
  set_target(r, TargetKind::ratio_max, 1.1, "<= 1.1x memcpy");
  r.note =
      "the caller's write into the lent input is timed; the worker maps both buffers once and "
      "keeps them accessible between jobs (LentBuffersAfterJob::kept_accessible); its handler "
      "copies input to output";
  add_memcpy_beside(r, std::move(memcpy_ms),
                    "the same two copies on the calling thread, from the same source into the same "
                    "lent buffers");
  const std::string baseline_id = rows.back().baseline_name;
  const Row* handoff = find_row("baseline.handoff_16MiB");
  const double floor = handoff != nullptr ? handoff->ratio() : nan_value;
  if (!std::isnan(floor)) {
    rows.back().note += fmt::format(
        "; the same hand-off with no library (baseline.handoff_16MiB) is {:.2f}x its memcpy",
        floor);
  }
  Row& submitted =
      add_row("procpool.zero_copy_16MiB_submit", "procpool",
              "16 MiB in + out through lent buffers (submit_in_place().get())", "ms", submit_ms);
  set_baseline(submitted, baseline_id);
  submitted.note =
      "timed alternately with call_in_place above, on the same pool; baseline: the 2 x memcpy "
      "above it";
  Row& revoked =
      add_row("procpool.zero_copy_16MiB_inaccessible", "procpool",
              "16 MiB in + out, buffers inaccessible after each job (default)", "ms", revoked_ms);
  set_baseline(revoked, baseline_id);
  revoked.note =
      "call_in_place on a second pool with LentBuffersAfterJob::inaccessible (the default), "
      "timed after the rows above, with its own buffers: its worker makes both buffers "
      "inaccessible after each job and accessible again for the next, so each page is touched "
      "anew after its page-table entry changed; baseline: the 2 x memcpy above";
}

// ---- output ----------------------------------------------------------------------------------

void print_table(const Config& cfg) {
  std::string line(150, '-');
  fmt::print("\nprocpool-bench ({} mode, {} repetitions, figures are medians), {}\n",
             cfg.quick ? "quick" : "full", cfg.reps, bench::utc_date());
  fmt::print("machine: {} CPUs, {}, kernel {}\n", bench::usable_cpus(), bench::cpu_model(),
             bench::kernel_release());
  std::string section;
  for (const auto& r : rows) {
    if (r.section != section) {
      section = r.section;
      fmt::print("{}\n{:<70} {:>12} {:>12} {:>8} {:>18} {:>7}\n{}\n", line, section, "figure",
                 "baseline", "ratio", "target", "status", line);
    }
    std::string fig = std::isnan(r.figure) ? "-" : num(r.figure) + " " + r.unit;
    std::string base = std::isnan(r.baseline) ? "-" : num(r.baseline);
    std::string ratio = std::isnan(r.ratio()) ? "-" : fmt::format("{:.2f}x", r.ratio());
    fmt::print("{:<70} {:>12} {:>12} {:>8} {:>18} {:>7}\n", r.what, fig, base, ratio,
               r.target_text.empty() ? "-" : r.target_text, r.status());
  }
  fmt::print("{}\nnotes:\n", line);
  for (const auto& r : rows) {
    if (!r.note.empty()) fmt::print("  {}: {}\n", r.id, r.note);
  }
  if (!python_note.empty()) fmt::print("  python: {}\n", python_note);
}

void write_json(const Config& cfg, double elapsed_s) {
  std::string out = "{\n";
  out += "  \"schema\": 1,\n";
  out += fmt::format("  \"date\": \"{}\",\n", bench::utc_date());
  out += fmt::format("  \"mode\": \"{}\",\n", cfg.quick ? "quick" : "full");
  out += fmt::format("  \"repetitions\": {},\n", cfg.reps);
  out += fmt::format("  \"elapsed_s\": {},\n", json_num(elapsed_s));
  out += fmt::format(
      "  \"machine\": {{\"cpus\": {}, \"cpu_model\": \"{}\", \"kernel\": \"{}\", \"python\": "
      "\"{}\"}},\n",
      bench::usable_cpus(), json_escape(bench::cpu_model()), json_escape(bench::kernel_release()),
      json_escape(python_version));
  out += fmt::format("  \"python_note\": \"{}\",\n", json_escape(python_note));
  out += "  \"rows\": [\n";
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const Row& r = rows[i];
    std::string reps;
    for (std::size_t k = 0; k < r.per_rep.size(); ++k) {
      reps += (k ? ", " : "") + json_num(r.per_rep[k]);
    }
    out += fmt::format(
        "    {{\"id\": \"{}\", \"section\": \"{}\", \"what\": \"{}\", \"unit\": \"{}\", "
        "\"figure\": {}, \"per_repetition\": [{}], \"baseline_id\": \"{}\", \"baseline\": {}, "
        "\"ratio\": {}, \"target\": \"{}\", \"status\": \"{}\", \"note\": \"{}\"}}{}\n",
        json_escape(r.id), json_escape(r.section), json_escape(r.what), json_escape(r.unit),
        json_num(r.figure), reps, json_escape(r.baseline_name), json_num(r.baseline),
        json_num(r.ratio()), json_escape(r.target_text), r.status(), json_escape(r.note),
        i + 1 < rows.size() ? "," : "");
  }
  out += "  ]\n}\n";
  std::filesystem::path path(cfg.json_path);
  if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path());
  std::ofstream file(path, std::ios::trunc);
  file << out;
  if (!file) throw std::runtime_error("cannot write " + cfg.json_path);
  fmt::print("wrote {}\n", cfg.json_path);
}

std::string self_exe() {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) throw std::runtime_error("readlink(/proc/self/exe)");
  return std::string(buf, static_cast<std::size_t>(n));
}

void usage() {
  std::fprintf(
      stderr,
      "usage: procpool-bench [--quick] [--json PATH] [--reps N] [--no-python] [--only STEP,...]\n"
      "  --quick      small sizes, fewer repetitions (CI smoke use, < 1 minute)\n"
      "  --json PATH  where to write the results (default "
      "benchmarks/results/latest.json)\n"
      "  --reps N     repetitions per figure (default 5, 3 with --quick)\n"
      "  --no-python  skip the Python baselines\n"
      "  --only STEP,...  run only the steps whose name contains one of the STEPs\n"
      "               (baselines, python, rtt, blocking, pipelined, syscalls, payload (its\n"
      "               last row alone: zero_copy), recycle, memory_caps, max_jobs1, leaks, idle,\n"
      "               spin); for profiling one measurement\n");
}

}  // namespace

int main(int argc, char** argv) {
  procpool::JobRegistry jobs;
  jobs.add("noop",
           [](procpool::JobContext&, std::span<const std::byte>) { return procpool::Bytes{}; });
  jobs.add("echo", [](procpool::JobContext&, std::span<const std::byte> in) {
    return procpool::Bytes(in.begin(), in.end());
  });
  jobs.add_owning("owning_echo",
                  [](procpool::JobContext&, procpool::Bytes payload) { return payload; });
  jobs.add_in_place("in_place_echo", [](procpool::JobContext&, std::span<const std::byte> in,
                                        std::span<std::byte> out) {
    std::size_t n = std::min(in.size(), out.size());
    std::memcpy(out.data(), in.data(), n);
    return n;
  });
  // Keeps the CPU busy for the microseconds its payload gives (a job that needs its core).
  jobs.add("burn_cpu_us", [](procpool::JobContext&, std::span<const std::byte> in) {
    auto us = procpool::Codec<std::uint32_t>::decode(in);
    auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(us);
    std::uint32_t turns = 0;
    while (std::chrono::steady_clock::now() < until)
      ++turns;
    return procpool::Codec<std::uint32_t>::encode(turns);
  });
  // Grows by touched 1 MiB steps up to the MiB its payload gives ("<grow MiB> <limit MiB>
  // <stamps file>"), stamping each step and the moment its resident memory reaches the limit, then
  // waits to be stopped: a leak racing its worker's memory limit.
  jobs.add("grow_mb_stamped", [](procpool::JobContext&, std::span<const std::byte> in) {
    std::string text(reinterpret_cast<const char*>(in.data()), in.size());
    unsigned grow_mib = 0, limit_mib = 0;
    char path[256] = {};
    if (std::sscanf(text.c_str(), "%u %u %255s", &grow_mib, &limit_mib, path) != 3) {
      throw std::runtime_error("payload: <grow MiB> <limit MiB> <stamps file>");
    }
    int fd = ::open(path, O_RDWR | O_CLOEXEC);
    void* at =
        fd < 0 ? MAP_FAILED : ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (fd >= 0) ::close(fd);
    if (at == MAP_FAILED) throw std::runtime_error("cannot map the stamps file");
    auto* stamps = static_cast<std::atomic<std::int64_t>*>(at);
    static std::vector<std::unique_ptr<char[]>> kept;
    constexpr std::size_t step = std::size_t{1} << 20;
    for (unsigned i = 0; i < grow_mib; ++i) {
      kept.push_back(std::make_unique<char[]>(step));
      std::memset(kept.back().get(), 1, step);
      const std::int64_t now = bench::now_ns();
      stamps[0].store(now);
      if (stamps[1].load() == 0 && bench::self_rss_bytes() >= (std::uint64_t{limit_mib} << 20)) {
        stamps[1].store(now);
      }
    }
    for (;;)
      ::pause();
    return procpool::Bytes{};
  });
  // This binary is its own worker.
  if (auto rc = procpool::run_worker_if_requested(argc, argv, jobs)) return *rc;
  if (argc > 1 && std::strcmp(argv[1], "--bench-spawn-child") == 0) {
    return bench::spawn_child_main();
  }

  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) quick = true;
  }
  Config cfg = quick ? quick_config() : Config{};
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--quick") continue;
    if (a == "--no-python") {
      cfg.python = false;
    } else if (a == "--json" && i + 1 < argc) {
      cfg.json_path = argv[++i];
    } else if (a == "--only" && i + 1 < argc) {
      cfg.only = argv[++i];
    } else if (a == "--reps" && i + 1 < argc) {
      cfg.reps = std::max(1, std::atoi(argv[++i]));
      cfg.py.reps = cfg.reps;
    } else {
      usage();
      return a == "--help" || a == "-h" ? 0 : 2;
    }
  }

  try {
    std::int64_t start = bench::now_ns();
    auto step = [&cfg](std::string_view name) {
      if (cfg.only.empty()) return true;
      // A comma-separated list: run a step if any entry names part of it.
      for (std::size_t at = 0; at <= cfg.only.size();) {
        std::size_t comma = std::min(cfg.only.find(',', at), cfg.only.size());
        std::string_view entry = std::string_view(cfg.only).substr(at, comma - at);
        if (!entry.empty() && name.find(entry) != std::string_view::npos) return true;
        at = comma + 1;
      }
      return false;
    };
    // Baselines first, while this process has one thread (they fork).
    if (step("baselines")) run_native_baselines(cfg, self_exe());
    if (step("python")) run_python(cfg);
    if (step("rtt")) {
      measure_round_trip(cfg, Placement::same_core, "same_core");
      if (bench::usable_cpus() >= 2) measure_round_trip(cfg, Placement::cross_core, "cross_core");
      measure_round_trip(cfg, Placement::unpinned, "unpinned");
    }
    if (step("blocking")) measure_blocking(cfg);
    if (step("pipelined")) measure_pipelined(cfg);
    if (step("syscalls")) measure_syscalls(cfg);
    if (step("payload")) {
      measure_payload(cfg, std::size_t{1} << 20, "owning_echo", "procpool.payload_16MiB");
      measure_payload(cfg, std::size_t{1} << 20, "echo", "procpool.payload_16MiB_copying_echo");
      measure_payload(cfg, std::size_t{32} << 20, "owning_echo",
                      "procpool.payload_16MiB_ring32MiB");
    }
    // Part of `payload`, and alone with --only zero_copy.
    if (step("payload_zero_copy")) zero_copy_row(cfg);
    if (step("recycle")) {
      for (procpool::StartMode mode :
           {procpool::StartMode::exec, procpool::StartMode::fork_server}) {
        measure_recycle(cfg, false, mode);
        if (cfg.big_host) measure_recycle(cfg, true, mode);
      }
    }
    if (step("memory_caps")) measure_memory_caps(cfg);
    if (step("max_jobs1")) {
      measure_max_jobs1(cfg, procpool::StartMode::exec);
      measure_max_jobs1(cfg, procpool::StartMode::fork_server);
    }
    if (step("leaks")) measure_leaks(cfg);
    if (step("idle")) measure_idle(cfg);
    if (step("spin")) measure_spin(cfg);

    double elapsed = static_cast<double>(bench::now_ns() - start) / 1e9;
    print_table(cfg);
    fmt::print("elapsed: {:.1f} s\n", elapsed);
    write_json(cfg, elapsed);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "procpool-bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
