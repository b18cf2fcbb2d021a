// Small jobs on two workers: one at a time (submit().get() and call()), pipelined (callbacks and
// futures), through submit_batch, and the wake-up syscalls each job costs.
#include <fmt/format.h>

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench_util.hpp"
#include "measurements.hpp"
#include "pool_harness.hpp"

namespace bench {

void measure_blocking(const Config& cfg, Report& report) {
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
  Row& r =
      report.add_row("procpool.blocking_submit_per_s", "procpool",
                     "one-at-a-time blocking submit().get(), 2 workers, unpinned", "1/s", per_s);
  report.set_baseline(r, "baseline.futex_unpinned.per_s");
  set_target(r, TargetKind::abs_min, 50'000, ">= 50,000/s");
  r.note = "baseline: raw futex ping-pong round trips/s, unpinned";
  Row& c = report.add_row("procpool.blocking_call_per_s", "procpool",
                          "one-at-a-time blocking call(), 2 workers, unpinned", "1/s", call_per_s);
  report.set_baseline(c, "procpool.blocking_submit_per_s");
  c.note = "timed alternately with the row above, on the same pool; baseline: that row";
  if (report.find_row("baseline.python.executor_submit_result_per_s") != nullptr) {
    Row& p =
        report.add_row("procpool.blocking_submit_vs_python", "procpool",
                       "one-at-a-time blocking submit vs Python submit().result()", "1/s", per_s);
    report.set_baseline(p, "baseline.python.executor_submit_result_per_s");
  }
}

void measure_pipelined(const Config& cfg, Report& report) {
  log_progress("procpool: pipelined submit, 2 workers (callbacks and futures)");
  std::vector<double> cb_per_s, fut_per_s;
  {
    procpool::Pool pool(pool_options(2));
    settle(pool, 2);
    run_pipelined(pool, cfg.rtt_warmup);
    for (std::size_t rep = 0; rep < cfg.reps; ++rep) {
      std::int64_t t0 = now_ns();
      if (run_pipelined(pool, cfg.pipelined_n) != 0) throw std::runtime_error("pipelined failures");
      cb_per_s.push_back(static_cast<double>(cfg.pipelined_n) /
                         (static_cast<double>(now_ns() - t0) / 1e9));

      std::vector<procpool::JobFuture> futures;
      futures.reserve(cfg.pipelined_n);
      t0 = now_ns();
      for (std::size_t i = 0; i < cfg.pipelined_n; ++i) {
        futures.push_back(pool.submit("noop", procpool::Bytes{}));
      }
      for (auto& f : futures)
        check_ok(f.get());
      fut_per_s.push_back(static_cast<double>(cfg.pipelined_n) /
                          (static_cast<double>(now_ns() - t0) / 1e9));
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
        std::int64_t t0 = now_ns();
        if (run_batched(pool, cfg.pipelined_n, futures) != 0) {
          throw std::runtime_error("batch failures");
        }
        (futures ? batch_fut_per_s : batch_cb_per_s)
            .push_back(static_cast<double>(cfg.pipelined_n) /
                       (static_cast<double>(now_ns() - t0) / 1e9));
      }
    }
  }
  Row& c = report.add_row("procpool.batch_callback_per_s", "procpool",
                          "small jobs, 2 workers, submit_batch of 1,000 (callbacks)", "1/s",
                          batch_cb_per_s);
  report.set_baseline(c, "baseline.python.pool_map_chunksize1_per_s");
  set_target(c, TargetKind::abs_min, 1'000'000, ">= 1,000,000/s");
  c.note = "baseline: Python multiprocessing.Pool.map(chunksize=1)";
  Row& d = report.add_row("procpool.batch_futures_per_s", "procpool",
                          "small jobs, 2 workers, submit_batch of 1,000 (futures, read in order)",
                          "1/s", batch_fut_per_s);
  report.set_baseline(d, "baseline.python.pool_map_chunksize1_per_s");
  set_target(d, TargetKind::abs_min, 1'000'000, ">= 1,000,000/s");
  d.note = "baseline: Python multiprocessing.Pool.map(chunksize=1)";

  Row& a =
      report.add_row("procpool.pipelined_callback_per_s", "procpool",
                     "small jobs, 2 workers, pipelined (Completion callbacks)", "1/s", cb_per_s);
  report.set_baseline(a, "baseline.python.pool_map_chunksize1_per_s");
  set_target(a, TargetKind::abs_min, 1'000'000, ">= 1,000,000/s");
  a.note = "baseline: Python multiprocessing.Pool.map(chunksize=1); one submit() per job";
  Row& b =
      report.add_row("procpool.pipelined_futures_per_s", "procpool",
                     "small jobs, 2 workers, pipelined (all futures, then get)", "1/s", fut_per_s);
  report.set_baseline(b, "baseline.python.executor_pipelined_per_s");
  set_target(b, TargetKind::abs_min, 1'000'000, ">= 1,000,000/s");
  b.note = "baseline: Python ProcessPoolExecutor, all submitted then wait()";
}

// Syscall entries per job across host and workers, from perf tracepoints inherited by the pool's
// threads and workers: (count(big run) - count(small run)) / (big - small), so start-up and
// shutdown cancel out.
void measure_syscalls(const Config& cfg, Report& report) {
  log_progress("procpool: wake-up syscalls per job (perf tracepoints)");
  const std::vector<std::string> names = {"futex",      "read",        "write",
                                          "epoll_wait", "epoll_pwait", "epoll_pwait2"};
  auto count = [&](std::size_t n, bool batched) {
    std::vector<std::unique_ptr<SyscallCounter>> counters;
    for (const auto& name : names)
      counters.push_back(std::make_unique<SyscallCounter>(name));
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
      Row& r = report.add_row(
          id, "procpool", "futex + eventfd syscalls per job, " + how + ", 2 workers", "1/job", {});
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
    Row& r = report.add_row(id, "procpool",
                            "futex + read + write syscalls per job, " + how + ", 2 workers",
                            "1/job", {per_job[0] + per_job[1] + per_job[2]});
    set_target(r, TargetKind::abs_max, 0.05, "<= 0.05/job");
    r.note = fmt::format(
        "one measurement (not repeated); futex {:.3f}, read {:.3f}, write {:.3f} per job (eventfd "
        "wake-ups are writes; reads include the /proc/<pid>/statm reading)",
        per_job[0], per_job[1], per_job[2]);
    report.add_row(
        id + "_epoll", "procpool",
        "epoll_wait + epoll_pwait + epoll_pwait2 syscalls per job, " + how + ", 2 workers", "1/job",
        {per_job[3] + per_job[4] + per_job[5]});
  }
}

}  // namespace bench
