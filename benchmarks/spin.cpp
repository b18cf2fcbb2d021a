// SpinPolicy on against off, side by side: each repetition runs every scenario once with each
// setting, alternating which goes first, so that drift on a shared machine hits both alike.
#include <atomic>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.hpp"
#include "measurements.hpp"
#include "pool_harness.hpp"

namespace bench {

namespace {

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
  std::int64_t t0 = now_ns();
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
  double seconds = static_cast<double>(now_ns() - t0) / 1e9;
  return static_cast<double>(sc.callers * sc.jobs_per_caller) / seconds;
}

// The p50 round trip of a no-op job with 1 worker, the caller, the supervisor thread and the
// worker all on CPU 0: where a poller has no free CPU at all.
double spin_same_core_p50(const Config& cfg, bool spin) {
  pin_self(0);  // the supervisor thread and the worker inherit this
  procpool::PoolOptions options = pool_options(1);
  options.spin.enabled = spin;
  std::vector<double> ns(cfg.rtt_n);
  {
    procpool::Pool pool(options);
    settle(pool, 1);
    run_noops_one_at_a_time(pool, cfg.rtt_warmup);
    time_noop_round_trips(pool, ns, RoundTripApi::submit_get);
  }
  unpin_self();
  return percentile(ns, 50) / 1e3;
}

// Three times the repetitions of the other rows: on this machine one repetition's on/off pair
// differed by up to 25% either way (0.62x-1.25x in three full runs), against a 5% allowance.
constexpr std::size_t spin_reps_factor = 3;

}  // namespace

void measure_spin(const Config& cfg, Report& report) {
  log_progress("procpool: SpinPolicy on vs off, side by side");
  const std::size_t reps = cfg.reps * spin_reps_factor;
  std::vector<double> same_core_on, same_core_off;
  for (std::size_t rep = 0; rep < reps; ++rep) {
    bool first = rep % 2 == 0;
    (first ? same_core_on : same_core_off).push_back(spin_same_core_p50(cfg, first));
    (first ? same_core_off : same_core_on).push_back(spin_same_core_p50(cfg, !first));
  }
  Row& off_row = report.add_row("procpool.spin.rtt_same_core.off.p50", "procpool",
                                "1 worker, all on CPU 0, no-op round trip p50, SpinPolicy off",
                                "us", same_core_off);
  off_row.note = "the plain sleeping path, measured alternately with the row below";
  Row& on_row = report.add_row("procpool.spin.rtt_same_core.on.p50", "procpool",
                               "1 worker, all on CPU 0, no-op round trip p50, SpinPolicy on", "us",
                               same_core_on);
  report.set_baseline(on_row, "procpool.spin.rtt_same_core.off.p50");
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
    Row& b = report.add_row(base + ".off_per_s", "procpool",
                            "2 workers, " + sc.what + ", SpinPolicy off", "1/s", off[i]);
    b.note = "the plain sleeping path, measured alternately with the row below";
    Row& a = report.add_row(base + ".on_per_s", "procpool",
                            "2 workers, " + sc.what + ", SpinPolicy on", "1/s", on[i]);
    report.set_baseline(a, base + ".off_per_s");
    set_target(a, TargetKind::ratio_min, 0.95, ">= 0.95x off");
    a.note = "adaptive spinning must never lose to the sleeping path (0.05 for noise)";
  }
}

}  // namespace bench
