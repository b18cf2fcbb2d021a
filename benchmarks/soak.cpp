// procpool-soak: hours of mixed load compressed into minutes, with faults and recycling, watching
// that the host stays flat (RSS, descriptors) and latency stays put. Not a test: it asserts
// nothing, it reports (docs/reliability.md).
//
//   procpool-soak [--minutes N | --quick] [--interval S] [--threads T] [--workers W]
//                 [--fault-percent P] [--json PATH]
//   procpool-soak --fault-matrix [--reps N] [--json PATH]
//
// Soak mode prints one line per interval: host RSS, descriptors, jobs done, p50/p99/max latency
// over that interval, recycles and failures by kind since the previous line. --fault-matrix runs
// each fault of tests/test_fault_matrix.cpp against a one-worker pool and reports the outcome kind
// and the recovery time: from the job's outcome to the replacement worker's `ready` event.
#include <fmt/format.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <procpool/procpool.hpp>
#include <random>
#include <semaphore>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.hpp"
#include "soak_jobs.hpp"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

struct Config {
  double minutes = 5;
  double interval_s = 10;
  int threads = 4;
  std::size_t workers = 4;
  double fault_percent = 0.2;
  bool fault_matrix = false;
  int reps = 5;
  std::string json_path;
};

procpool::Bytes text_bytes(std::string_view s) {
  const auto* p = reinterpret_cast<const std::byte*>(s.data());
  return procpool::Bytes(p, p + s.size());
}

template <class T>
procpool::Bytes value_bytes(T value) {
  procpool::Bytes out(sizeof value);
  std::memcpy(out.data(), &value, sizeof value);
  return out;
}

// ---- soak ------------------------------------------------------------------------------------

struct Fault {
  const char* job;
  procpool::Bytes payload;
  std::chrono::milliseconds timeout{0};
};

std::vector<Fault> soak_faults() {
  return {
      {"fail", text_bytes("x")},
      {"sigkill", {}},
      {"segv", {}},
      {"abort", {}},
      {"exit", procpool::Bytes{std::byte{3}}},
      {"hang", {}, 100ms},
      {"garbage", text_bytes("random")},
      {"grandchild_then_die", {}},
      {"no-such-job", {}},
  };
}

struct Interval {
  double t_s = 0;
  std::uint64_t rss_kib = 0;
  std::size_t fds = 0;
  std::uint64_t jobs = 0;
  double p50_ms = 0, p99_ms = 0, max_ms = 0;
  std::map<std::string, std::uint64_t> recycles;
  std::map<std::string, std::uint64_t> failures;
  std::size_t workers = 0;
};

std::string counts_text(const std::map<std::string, std::uint64_t>& counts) {
  std::string out;
  for (const auto& [name, n] : counts) {
    if (n == 0) continue;
    out += fmt::format("{}{}={}", out.empty() ? "" : " ", name, n);
  }
  return out.empty() ? "-" : out;
}

std::string counts_json(const std::map<std::string, std::uint64_t>& counts) {
  std::string out = "{";
  for (const auto& [name, n] : counts)
    out += fmt::format("{}\"{}\": {}", out.size() > 1 ? ", " : "", name, n);
  return out + "}";
}

int run_soak(const Config& cfg) {
  procpool::PoolOptions options;
  options.workers = cfg.workers;
  options.job_timeout = 10s;  // nothing in the normal mix comes near it
  options.kill_grace = 200ms;
  options.recycle.max_jobs = 1000;
  options.recycle.max_jobs_jitter = 250;
  options.recycle.max_lifetime = 60s;
  options.recycle.max_lifetime_jitter = 15s;
  options.recycle.memory_growth_limit = std::uint64_t{48} << 20;
  options.recycle.memory_hard_limit = std::uint64_t{1} << 30;
  options.restart_storm_threshold = 50;  // spread-out faults are not a storm
  std::atomic<std::uint64_t> warnings{0};
  options.log = [&](procpool::LogLevel level, std::string_view) {
    if (level >= procpool::LogLevel::warning) warnings.fetch_add(1, std::memory_order_relaxed);
  };
  procpool::Pool pool(options);

  std::mutex latency_mutex;
  std::vector<double> latencies_ms;
  std::atomic<bool> stop{false};
  const std::vector<Fault> faults = soak_faults();

  auto submitter = [&](int t) {
    std::mt19937_64 random(42 + static_cast<unsigned>(t));
    std::uniform_real_distribution<double> unit(0, 1);
    // Shared with this thread's callbacks, which may still be returning when the thread ends.
    struct InFlight {
      std::counting_semaphore<64> window{16};  // jobs in flight from this thread
      std::atomic<int> outstanding{0};
    };
    auto in_flight = std::make_shared<InFlight>();
    while (!stop.load(std::memory_order_relaxed)) {
      in_flight->window.acquire();
      double r = unit(random) * 100;
      std::string job;
      procpool::Bytes payload;
      procpool::SubmitOptions submit_options;
      if (r < cfg.fault_percent) {
        const Fault& f = faults[random() % faults.size()];
        job = f.job;
        payload = f.payload;
        submit_options.timeout = f.timeout;
      } else if (r < cfg.fault_percent + 0.5) {
        job = "leak_mb";  // a slow leak: memory_growth retires the worker now and then
        payload = value_bytes(std::uint32_t{1});
      } else {
        job = "echo";
        payload.resize(std::size_t{16} << (random() % 13));  // 16 B .. 64 KiB
      }
      auto submitted = Clock::now();
      in_flight->outstanding.fetch_add(1);
      pool.submit(
          job, std::move(payload), submit_options, [&, in_flight, submitted](procpool::JobResult) {
            double ms = std::chrono::duration<double, std::milli>(Clock::now() - submitted).count();
            {
              std::lock_guard lock(latency_mutex);
              latencies_ms.push_back(ms);
            }
            in_flight->window.release();
            in_flight->outstanding.fetch_sub(1);
            in_flight->outstanding.notify_all();
          });
    }
    for (int left = in_flight->outstanding.load(); left != 0; left = in_flight->outstanding.load())
      in_flight->outstanding.wait(left);
  };

  fmt::print("procpool-soak: {:.1f} min, {} threads, {} workers, {:.1f}% faults, interval {} s\n",
             cfg.minutes, cfg.threads, cfg.workers, cfg.fault_percent, cfg.interval_s);
  fmt::print("{:>7} {:>9} {:>4} {:>8} {:>8} {:>8} {:>8}  {}  |  {}\n", "t_s", "rss_KiB", "fds",
             "jobs", "p50_ms", "p99_ms", "max_ms", "recycles", "failures");
  const auto start = Clock::now();
  std::vector<std::thread> threads;
  for (int t = 0; t < cfg.threads; ++t)
    threads.emplace_back(submitter, t);

  std::vector<Interval> intervals;
  procpool::PoolStats previous = pool.stats();
  const auto end = start + std::chrono::duration<double>(cfg.minutes * 60);
  for (auto next = start + std::chrono::duration<double>(cfg.interval_s); next <= end + 1ms;
       next +=
       std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(cfg.interval_s))) {
    std::this_thread::sleep_until(next);  // a benchmark's reporting clock, not synchronisation
    std::vector<double> window;
    {
      std::lock_guard lock(latency_mutex);
      window.swap(latencies_ms);
    }
    procpool::PoolStats now = pool.stats();
    Interval iv;
    iv.t_s = std::chrono::duration<double>(Clock::now() - start).count();
    iv.rss_kib = bench::self_rss_bytes() / 1024;
    iv.fds = bench::self_fd_count();
    iv.jobs = window.size();
    iv.p50_ms = bench::percentile(window, 50);
    iv.p99_ms = bench::percentile(window, 99);
    iv.max_ms = window.empty() ? 0 : *std::max_element(window.begin(), window.end());
    iv.workers = now.workers.size();
    for (std::size_t i = 0; i < procpool::recycle_reason_count; ++i) {
      iv.recycles[std::string(to_string(static_cast<procpool::RecycleReason>(i)))] =
          now.recycles_by_reason[i] - previous.recycles_by_reason[i];
    }
    for (std::size_t i = 0; i < procpool::error_kind_count; ++i) {
      iv.failures[std::string(to_string(static_cast<procpool::ErrorKind>(i)))] =
          now.failed_by_kind[i] - previous.failed_by_kind[i];
    }
    previous = now;
    fmt::print("{:7.1f} {:9} {:4} {:8} {:8.3f} {:8.3f} {:8.1f}  {}  |  {}\n", iv.t_s, iv.rss_kib,
               iv.fds, iv.jobs, iv.p50_ms, iv.p99_ms, iv.max_ms, counts_text(iv.recycles),
               counts_text(iv.failures));
    std::fflush(stdout);
    intervals.push_back(std::move(iv));
  }
  stop = true;
  for (auto& t : threads)
    t.join();
  procpool::PoolStats final_stats = pool.stats();
  fmt::print("total: {} submitted, {} succeeded, {} failed, {} workers started, health {}\n",
             final_stats.submitted, final_stats.succeeded, final_stats.failed,
             final_stats.workers_started, to_string(final_stats.health));

  if (!cfg.json_path.empty()) {
    std::ofstream out(cfg.json_path);
    out << "{\n  \"mode\": \"soak\",\n";
    out << fmt::format("  \"date\": \"{}\",\n  \"cpu\": \"{}\",\n  \"kernel\": \"{}\",\n",
                       bench::utc_date(), bench::cpu_model(), bench::kernel_release());
    out << fmt::format(
        "  \"minutes\": {}, \"threads\": {}, \"workers\": {}, \"fault_percent\": {},\n",
        cfg.minutes, cfg.threads, cfg.workers, cfg.fault_percent);
    out << fmt::format(
        "  \"submitted\": {}, \"succeeded\": {}, \"failed\": {}, \"workers_started\": {},\n",
        final_stats.submitted, final_stats.succeeded, final_stats.failed,
        final_stats.workers_started);
    out << "  \"intervals\": [\n";
    for (std::size_t i = 0; i < intervals.size(); ++i) {
      const Interval& iv = intervals[i];
      out << fmt::format(
          "    {{\"t_s\": {:.1f}, \"rss_kib\": {}, \"fds\": {}, \"jobs\": {}, \"p50_ms\": {:.3f}, "
          "\"p99_ms\": {:.3f}, \"max_ms\": {:.1f}, \"workers\": {}, \"recycles\": {}, "
          "\"failures\": {}}}{}\n",
          iv.t_s, iv.rss_kib, iv.fds, iv.jobs, iv.p50_ms, iv.p99_ms, iv.max_ms, iv.workers,
          counts_json(iv.recycles), counts_json(iv.failures), i + 1 < intervals.size() ? "," : "");
    }
    out << "  ]\n}\n";
  }
  return 0;
}

// ---- fault matrix ----------------------------------------------------------------------------

struct MatrixRow {
  std::string fault;
  std::string job;
  procpool::Bytes payload;
  std::chrono::milliseconds timeout{0};
  bool kill_from_outside = false;
  int outside_signal = 0;
  bool crash_at_start = false;
  std::uint64_t memory_hard_limit = 0;
};

std::vector<MatrixRow> matrix_rows() {
  std::vector<MatrixRow> rows;
  auto add = [&](std::string fault, std::string job, procpool::Bytes payload = {}) {
    MatrixRow row;
    row.fault = std::move(fault);
    row.job = std::move(job);
    row.payload = std::move(payload);
    rows.push_back(std::move(row));
    return &rows.back();
  };
  add("handler throws", "fail", text_bytes("x"));
  add("segfault", "segv");
  add("abort", "abort");
  add("_exit(3)", "exit", procpool::Bytes{std::byte{3}});
  add("hang forever (timeout 100 ms)", "hang")->timeout = 100ms;
  add("hang ignoring SIGTERM (timeout 100 ms, grace 100 ms)", "hang_ignoring_term")->timeout =
      100ms;
  add("allocate without bound (hard limit 256 MiB)", "balloon_mb",
      value_bytes(std::uint32_t{64 * 1024}))
      ->memory_hard_limit = std::uint64_t{256} << 20;
  add("grandchild, then die", "grandchild_then_die");
  add("garbage: random bytes", "garbage", text_bytes("random"));
  add("garbage: length past the segment", "garbage", text_bytes("length"));
  add("garbage: wrong job id", "garbage", text_bytes("job_id"));
  add("noise over the whole segment", "scribble_segment");
  add("unmap its segment", "unmap_segment");
  add("close its channel, exit(0) mid-job", "close_and_exit");
  auto* killed = add("SIGKILL from outside mid-job", "hang");
  killed->kill_from_outside = true;
  killed->outside_signal = SIGKILL;
  auto* stopped = add("SIGSTOP from outside mid-job (timeout 100 ms)", "hang");
  stopped->kill_from_outside = true;
  stopped->outside_signal = SIGSTOP;
  stopped->timeout = 100ms;
  add("crash at every start-up", "echo")->crash_at_start = true;
  return rows;
}

struct MatrixResult {
  std::string fault;
  std::string kind;
  std::vector<double> recovery_ms;  // outcome -> replacement ready
  std::string note;
};

MatrixResult run_row(const MatrixRow& row, int reps, const std::string& self) {
  MatrixResult result;
  result.fault = row.fault;
  for (int rep = 0; rep < reps; ++rep) {
    std::mutex mutex;
    std::condition_variable changed;
    std::vector<std::pair<Clock::time_point, int>> ready;  // when, pid
    Clock::time_point degraded_at{};
    procpool::PoolOptions options;
    options.workers = 1;
    options.kill_grace = 100ms;
    options.log = [](procpool::LogLevel, std::string_view) {};
    options.recycle.memory_hard_limit = row.memory_hard_limit;
    options.recycle.memory_sample_interval = 10ms;
    if (row.crash_at_start) {
      options.worker_command = {self, "--crash-at-start"};
      options.restart_storm_threshold = 3;
      options.restart_backoff_initial = 1ms;
      options.restart_backoff_max = 20ms;
    }
    options.on_event = [&](const procpool::PoolEvent& e) {
      std::lock_guard lock(mutex);
      if (e.type == procpool::EventType::ready) ready.emplace_back(Clock::now(), e.pid);
      if (e.type == procpool::EventType::degraded) degraded_at = Clock::now();
      changed.notify_all();
    };
    auto created = Clock::now();
    procpool::Pool pool(options);
    if (!row.crash_at_start) {
      // Wait for the first worker, so the fault hits a ready one.
      std::unique_lock lock(mutex);
      changed.wait(lock, [&] { return !ready.empty(); });
    }
    procpool::SubmitOptions submit_options;
    submit_options.timeout = row.timeout;
    std::promise<std::pair<Clock::time_point, procpool::JobResult>> outcome;
    pool.submit(row.job, row.payload, submit_options, [&](procpool::JobResult r) {
      outcome.set_value({Clock::now(), std::move(r)});
    });
    if (row.kill_from_outside) {
      int pid = 0;
      while (pid == 0) {
        for (const auto& w : pool.stats().workers)
          if (w.state == procpool::WorkerState::busy) pid = w.pid;
      }
      ::kill(pid, row.outside_signal);
    }
    auto [outcome_at, job_result] = outcome.get_future().get();
    result.kind = job_result.ok() ? "ok" : std::string(to_string(job_result.error().kind));
    if (row.crash_at_start) {
      result.recovery_ms.push_back(
          std::chrono::duration<double, std::milli>(degraded_at - created).count());
      result.note = "no recovery: the breaker trips; figure is pool start -> degraded";
      continue;
    }
    if (job_result.ok() || job_result.error().kind == procpool::ErrorKind::handler_error) {
      result.recovery_ms.push_back(0);
      result.note = "worker kept";
      continue;
    }
    std::unique_lock lock(mutex);
    changed.wait(lock, [&] { return ready.size() >= 2; });
    result.recovery_ms.push_back(
        std::chrono::duration<double, std::milli>(ready[1].first - outcome_at).count());
    if (ready[1].first < outcome_at) result.note = "replacement ready before the outcome";
  }
  return result;
}

int run_fault_matrix(const Config& cfg, const std::string& self) {
  std::vector<MatrixResult> results;
  fmt::print("| fault | outcome kind | recovery p50 (ms) | recovery max (ms) | note |\n");
  fmt::print("| --- | --- | ---: | ---: | --- |\n");
  for (const MatrixRow& row : matrix_rows()) {
    MatrixResult r = run_row(row, cfg.reps, self);
    fmt::print("| {} | `{}` | {:.1f} | {:.1f} | {} |\n", r.fault, r.kind,
               bench::percentile(r.recovery_ms, 50),
               *std::max_element(r.recovery_ms.begin(), r.recovery_ms.end()), r.note);
    std::fflush(stdout);
    results.push_back(std::move(r));
  }
  if (!cfg.json_path.empty()) {
    std::ofstream out(cfg.json_path);
    out << fmt::format(
        "{{\n  \"mode\": \"fault_matrix\",\n  \"date\": \"{}\",\n  \"cpu\": \"{}\",\n  "
        "\"kernel\": \"{}\",\n  \"reps\": {},\n  \"rows\": [\n",
        bench::utc_date(), bench::cpu_model(), bench::kernel_release(), cfg.reps);
    for (std::size_t i = 0; i < results.size(); ++i) {
      const auto& r = results[i];
      out << fmt::format(
          "    {{\"fault\": \"{}\", \"kind\": \"{}\", \"recovery_p50_ms\": {:.2f}, "
          "\"recovery_max_ms\": {:.2f}, \"note\": \"{}\"}}{}\n",
          r.fault, r.kind, bench::percentile(r.recovery_ms, 50),
          *std::max_element(r.recovery_ms.begin(), r.recovery_ms.end()), r.note,
          i + 1 < results.size() ? "," : "");
    }
    out << "  ]\n}\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // A broken worker build, for the fault matrix's start-up row: dies before it attaches.
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--crash-at-start") == 0) std::abort();
  }
  procpool::JobRegistry jobs = bench::make_soak_registry();
  if (auto rc = procpool::run_worker_if_requested(argc, argv, jobs)) return *rc;

  Config cfg;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) {
        fmt::print(stderr, "procpool-soak: {} needs a value\n", arg);
        std::exit(2);
      }
      return argv[++i];
    };
    if (arg == "--quick") {
      cfg.minutes = 20.0 / 60;
      cfg.interval_s = 2;
    } else if (arg == "--minutes") {
      cfg.minutes = std::atof(next());
    } else if (arg == "--interval") {
      cfg.interval_s = std::atof(next());
    } else if (arg == "--threads") {
      cfg.threads = std::atoi(next());
    } else if (arg == "--workers") {
      cfg.workers = static_cast<std::size_t>(std::atoi(next()));
    } else if (arg == "--fault-percent") {
      cfg.fault_percent = std::atof(next());
    } else if (arg == "--fault-matrix") {
      cfg.fault_matrix = true;
    } else if (arg == "--reps") {
      cfg.reps = std::max(1, std::atoi(next()));
    } else if (arg == "--json") {
      cfg.json_path = next();
    } else {
      fmt::print(stderr,
                 "usage: procpool-soak [--minutes N | --quick] [--interval S] [--threads T] "
                 "[--workers W] [--fault-percent P] [--json PATH]\n"
                 "       procpool-soak --fault-matrix [--reps N] [--json PATH]\n");
      return 2;
    }
  }
  if (cfg.minutes <= 0 || cfg.interval_s <= 0 || cfg.threads < 1 || cfg.workers < 1) {
    fmt::print(stderr,
               "procpool-soak: --minutes, --interval, --threads and --workers must be > 0\n");
    return 2;
  }
  if (cfg.fault_matrix) return run_fault_matrix(cfg, "/proc/self/exe");
  return run_soak(cfg);
}
