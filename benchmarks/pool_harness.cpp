#include "pool_harness.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <iterator>
#include <stdexcept>
#include <string_view>
#include <thread>

#include "bench_util.hpp"

namespace bench {

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

std::size_t run_pipelined(procpool::Pool& pool, std::size_t n, const char* job) {
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

std::size_t run_batched(procpool::Pool& pool, std::size_t n, bool futures) {
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

void run_noops_one_at_a_time(procpool::Pool& pool, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i)
    check_ok(pool.submit("noop", procpool::Bytes{}).get());
}

void time_noop_round_trips(procpool::Pool& pool, std::vector<double>& ns, RoundTripApi api) {
  for (double& sample : ns) {
    std::int64_t t0 = now_ns();
    procpool::JobResult r = api == RoundTripApi::call
                                ? pool.call("noop", procpool::Bytes{})
                                : pool.submit("noop", procpool::Bytes{}).get();
    sample = static_cast<double>(now_ns() - t0);
    check_ok(r);
  }
}

}  // namespace bench
