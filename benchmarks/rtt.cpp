// A no-op job's round trip on an idle one-worker pool: call() and submit().get(), with the
// caller, the supervisor thread and the worker on one CPU, on two, or unpinned; and the context
// switches each round trip costs.
#include <fmt/format.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "bench_util.hpp"
#include "measurements.hpp"
#include "pool_harness.hpp"

namespace bench {

namespace {

struct SwitchCount {
  std::uint64_t caller = 0, supervisor = 0, worker = 0;
};

/// Context switches so far of this thread (the caller), of this process's other threads (the
/// supervisor's: the harness runs no other thread while it measures) and of the worker `pid`.
SwitchCount count_switches(int worker_pid) {
  SwitchCount count;
  const auto caller = static_cast<pid_t>(syscall(SYS_gettid));
  for (const auto& [tid, switches] : context_switches_of(getpid()))
    (tid == caller ? count.caller : count.supervisor) += switches;
  for (const auto& [tid, switches] : context_switches_of(worker_pid))
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
  f.p50.push_back(percentile(ns, 50) / 1e3);
  f.p99.push_back(percentile(ns, 99) / 1e3);
  auto per_job = [&](std::uint64_t SwitchCount::*field) {
    return static_cast<double>(after.*field - before.*field) / static_cast<double>(ns.size());
  };
  f.caller_switches.push_back(per_job(&SwitchCount::caller));
  f.supervisor_switches.push_back(per_job(&SwitchCount::supervisor));
  f.worker_switches.push_back(per_job(&SwitchCount::worker));
  f.total_switches.push_back(f.caller_switches.back() + f.supervisor_switches.back() +
                             f.worker_switches.back());
}

void measure_round_trip(const Config& cfg, Report& report, Placement pl, const std::string& key) {
  log_progress(fmt::format("procpool: no-op round trip, idle pool, {}", to_string(pl)));
  if (pl == Placement::unpinned) {
    unpin_self();
  } else {
    pin_self(0);  // the supervisor thread and the workers inherit this
  }
  RoundTripFigures by_call, by_submit;
  {
    procpool::Pool pool(pool_options(1));
    settle(pool, 1);
    if (pl == Placement::cross_core) {
      for (int pid : worker_pids(pool))
        pin_pid(pid, 1);
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
  unpin_self();
  std::string where = to_string(pl);
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
    Row& a = report.add_row(id + ".p50", "procpool",
                            "no-op job round trip, " + api + ", idle pool, " + where + ", p50",
                            "us", f.p50);
    report.set_baseline(a, "baseline.futex_" + key + ".p50");
    if (targets && pl != Placement::unpinned) {
      set_target(a, TargetKind::ratio_max, 1.25, "<= 1.25x futex");
    }
    a.note = place_note;
    Row& b = report.add_row(id + ".p99", "procpool",
                            "no-op job round trip, " + api + ", idle pool, " + where + ", p99",
                            "us", f.p99);
    report.set_baseline(b, id + ".p50");
    if (targets && pl != Placement::unpinned) {
      set_target(b, TargetKind::ratio_max, 3, "<= 3x own p50");
    }
    if (pl == Placement::cross_core) {
      double spin_p50 = report.figure_of("baseline.spin_cross_core.p50");
      double spin_p99 = report.figure_of("baseline.spin_cross_core.p99");
      if (!std::isnan(spin_p50) && spin_p50 > 0) {
        b.note = fmt::format(
            "the raw polled ping-pong across cores (no system call) in this run: p50 {} us, p99 "
            "{} us, {:.2f}x its p50",
            num(spin_p50), num(spin_p99), spin_p99 / spin_p50);
      }
    }
    Row& c = report.add_row(id + ".switches", "procpool",
                            "no-op job round trip, " + api + ", idle pool, " + where +
                                ", context switches per round trip (caller, supervisor, worker)",
                            "1/rt", f.total_switches);
    report.set_baseline(c, "baseline.futex_" + key + ".switches");
    c.note = fmt::format(
        "medians per round trip: caller thread {}, supervisor thread {}, worker {} (voluntary + "
        "involuntary, /proc/<pid>/task/*/status)",
        num(median(f.caller_switches)), num(median(f.supervisor_switches)),
        num(median(f.worker_switches)));
  };
  add_rows("procpool.rtt_" + key, "call()", by_call, true);
  add_rows("procpool.rtt_submit_get_" + key, "submit().get()", by_submit, false);
}

}  // namespace

void measure_round_trips(const Config& cfg, Report& report) {
  measure_round_trip(cfg, report, Placement::same_core, "same_core");
  if (usable_cpus() >= 2) measure_round_trip(cfg, report, Placement::cross_core, "cross_core");
  measure_round_trip(cfg, report, Placement::unpinned, "unpinned");
}

}  // namespace bench
