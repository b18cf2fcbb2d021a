// The pool memory budget (PoolOptions::memory_budget): jobs wait until the workers' memory plus
// their expected peak fits, one that could never fit fails at once, nothing waits forever, idle
// workers above min_workers give their memory back, and "auto" takes a fraction of the host's
// memory cgroup limit. Real workers leaking real memory; the decision itself against figures.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <procpool/procpool.hpp>
#include <string>

#include "catch.hpp"
#include "memory_budget.hpp"
#include "test_cgroup.hpp"
#include "test_support.hpp"

using namespace procpool;
using detail::BudgetReservation;
using detail::JobStatsTable;
using detail::MemoryBudgetGate;
using Admission = MemoryBudgetGate::Admission;
using procpool::test::eventually;
using procpool::test::Gate;
using procpool::test::quiet_options;
using procpool::test::TestCgroup;
using procpool::test::text;

namespace {

constexpr std::uint64_t MiB = std::uint64_t{1} << 20;

Bytes leak_then_wait(std::uint32_t mib, const Gate& gate) {
  return procpool::test::bytes(std::to_string(mib) + " " + gate.path());
}

std::int64_t largest_increase(const PoolStats& stats, const std::string& name) {
  for (const JobStats& job : stats.jobs) {
    if (job.name == name) return job.memory_delta_max_bytes;
  }
  return 0;
}

std::size_t idle_workers(const PoolStats& stats) {
  return static_cast<std::size_t>(
      std::count_if(stats.workers.begin(), stats.workers.end(),
                    [](const WorkerStats& w) { return w.state == WorkerState::idle; }));
}

MemoryBudgetGate gate_of(std::uint64_t bytes) {
  std::string why_none;
  procpool::MemoryBudget options;
  options.bytes = bytes;
  return MemoryBudgetGate(options, std::nullopt, why_none);
}

}  // namespace

TEST_CASE("the budget from options: bytes, a fraction of the host's limit, or none") {
  std::string why_none;
  procpool::MemoryBudget options;
  CHECK_FALSE(MemoryBudgetGate(options, 1024 * MiB, why_none).enabled());
  options.bytes = 500 * MiB;
  CHECK(MemoryBudgetGate(options, 1024 * MiB, why_none).bytes() == 500 * MiB);
  CHECK(why_none.empty());
  options.bytes = 0;
  options.host_limit_fraction = 0.75;
  CHECK(MemoryBudgetGate(options, 1024 * MiB, why_none).bytes() == 768 * MiB);
  CHECK(why_none.empty());
  MemoryBudgetGate none(options, std::nullopt, why_none);
  CHECK_FALSE(none.enabled());
  CHECK(why_none.find("no memory cgroup with a limit") != std::string::npos);
}

TEST_CASE("admission: fits, waits while something may free memory, never fits") {
  MemoryBudgetGate gate = gate_of(500 * MiB);
  bool held = false;
  CHECK(gate.admit(300 * MiB, 200 * MiB, true, held) == Admission::run);  // exactly the budget
  CHECK_FALSE(held);
  CHECK(gate.admit(300 * MiB, 201 * MiB, true, held) == Admission::hold);
  CHECK(held);
  CHECK(gate.admit(300 * MiB, 201 * MiB, true, held) == Admission::hold);  // counted once
  // Nothing runs or leaves: waiting would change nothing, so it runs.
  CHECK(gate.admit(300 * MiB, 450 * MiB, false, held) == Admission::run);
  bool other = false;
  CHECK(gate.admit(501 * MiB, 0, false, other) == Admission::never_fits);
  MemoryStats stats;
  gate.fill(stats, 42);
  CHECK(stats.budget_bytes == 500 * MiB);
  CHECK(stats.budget_in_use_bytes == 42);
  CHECK(stats.jobs_held_for_memory == 1);
  CHECK(stats.jobs_over_budget == 1);
  const std::string why = gate.refusal("transcribe", 501 * MiB, false);
  CHECK(why.find("transcribe") != std::string::npos);
  CHECK(why.find("501.0 MiB") != std::string::npos);
  CHECK(why.find("500.0 MiB") != std::string::npos);
  CHECK(why.find("could never run") != std::string::npos);
}

TEST_CASE("a worker holds its memory, or more while its jobs' peaks may still come") {
  BudgetReservation reservation;
  CHECK(reservation.charge(std::nullopt) == 0);
  CHECK(reservation.charge(10 * MiB) == 10 * MiB);
  reservation.add(10 * MiB, 300 * MiB);
  CHECK(reservation.charge(10 * MiB) == 310 * MiB);
  reservation.add(50 * MiB, 20 * MiB);  // sent ahead: counted from the first job's reading
  CHECK(reservation.charge(50 * MiB) == 330 * MiB);
  CHECK(reservation.charge(400 * MiB) == 400 * MiB);  // it grew past what was expected
  reservation.clear();
  CHECK(reservation.charge(320 * MiB) == 320 * MiB);
}

TEST_CASE("a job's expected peak: as submitted, else the most its name has added") {
  JobStatsTable stats;
  CHECK(MemoryBudgetGate::expected_peak(0, "leaky", stats) == 0);
  stats.record_memory("leaky", static_cast<std::int64_t>(300 * MiB), 1);
  stats.record_memory("leaky", static_cast<std::int64_t>(100 * MiB), 1);
  CHECK(MemoryBudgetGate::expected_peak(0, "leaky", stats) == 300 * MiB);
  CHECK(MemoryBudgetGate::expected_peak(64 * MiB, "leaky", stats) == 64 * MiB);
  stats.record_memory("shrinks", -static_cast<std::int64_t>(MiB), 1);
  CHECK(MemoryBudgetGate::expected_peak(0, "shrinks", stats) == 0);
}

TEST_CASE("a memory budget that cannot work is refused, naming the field") {
  auto refused = [](procpool::MemoryBudget budget) {
    PoolOptions options = quiet_options(1);
    options.memory_budget = budget;
    try {
      Pool pool(options);
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  CHECK(refused({0, 1.5}).find("MemoryBudget::host_limit_fraction") != std::string::npos);
  CHECK(refused({0, -0.5}).find("MemoryBudget::host_limit_fraction") != std::string::npos);
  CHECK(refused({0, std::nan("")}).find("MemoryBudget::host_limit_fraction") != std::string::npos);
  CHECK(refused({500 * MiB, 0.5}).find("give one of the two") != std::string::npos);
  CHECK(refused({MiB, 0}).find("MemoryBudget::bytes") != std::string::npos);
}

TEST_CASE("two jobs whose name has shown a 300 MiB peak run one at a time under a 500 MiB budget") {
#ifdef PROCPOOL_TEST_TSAN
  PROCPOOL_SKIP("300 MiB leaks under the thread sanitizer's shadow memory");
#endif
  PoolOptions options = quiet_options(2);
  options.recycle.memory_soft_limit = 200 * MiB;  // a worker that leaked is replaced after its job
  options.memory_budget.bytes = 500 * MiB;
  Pool pool(options);
  {
    Gate warm;
    auto first = pool.submit("leak_mb_wait_fifo", leak_then_wait(300, warm));
    warm.release();
    REQUIRE(first.get().ok());
  }
  REQUIRE(eventually([&] {
    PoolStats s = pool.stats();
    return s.workers_exited == 1 && idle_workers(s) == 2;
  }));
  CHECK(largest_increase(pool.stats(), "leak_mb_wait_fifo") >=
        static_cast<std::int64_t>(290 * MiB));

  Gate first_gate, second_gate;
  auto first = pool.submit("leak_mb_wait_fifo", leak_then_wait(300, first_gate));
  auto second = pool.submit("leak_mb_wait_fifo", leak_then_wait(300, second_gate));
  REQUIRE(eventually([&] { return pool.stats().memory.holding_job_for_memory; }));
  PoolStats held = pool.stats();
  CHECK(held.in_flight == 1);
  CHECK(held.queued == 1);
  CHECK(held.memory.jobs_held_for_memory == 1);
  CHECK(held.memory.budget_bytes == 500 * MiB);
  CHECK(held.memory.budget_in_use_bytes + 300 * MiB > 500 * MiB);
  CHECK(idle_workers(held) == 1);  // a worker was free: memory, not workers, held the job

  first_gate.release();
  CHECK(first.get().ok());
  // It runs once the first one's worker, which kept its 300 MiB, has gone.
  REQUIRE(eventually([&] {
    PoolStats s = pool.stats();
    return s.in_flight == 1 && s.queued == 0 && s.workers_exited == 2;
  }));
  second_gate.release();
  CHECK(second.get().ok());
  PoolStats after = pool.stats();
  CHECK(after.memory.jobs_held_for_memory == 1);
  CHECK(after.memory.jobs_over_budget == 0);
  CHECK_FALSE(after.memory.holding_job_for_memory);
}

TEST_CASE("a job whose expected peak alone exceeds the budget fails at once, and says why") {
  PoolOptions options = quiet_options(1);
  options.memory_budget.bytes = 64 * MiB;
  Pool pool(options);
  SubmitOptions big;
  big.expected_memory_bytes = 100 * MiB;
  JobResult queued = pool.submit("echo", procpool::test::bytes("x"), big).get();
  REQUIRE_FALSE(queued.ok());
  CHECK(queued.error().kind == ErrorKind::memory_limit);
  CHECK(queued.error().message.find("could never run") != std::string::npos);
  CHECK(queued.error().message.find("SubmitOptions::expected_memory_bytes") != std::string::npos);
  JobResult called = pool.call("echo", procpool::test::bytes("x"), big);
  REQUIRE_FALSE(called.ok());
  CHECK(called.error().kind == ErrorKind::memory_limit);
  // The pool serves jobs that fit, queued and called.
  SubmitOptions small;
  small.expected_memory_bytes = 8 * MiB;
  CHECK(text(pool.submit("echo", procpool::test::bytes("y"), small).get().value()) == "y");
  CHECK(text(pool.call("echo", procpool::test::bytes("z"), small).value()) == "z");
  PoolStats stats = pool.stats();
  CHECK(stats.memory.jobs_over_budget == 2);
  CHECK(stats.failures(ErrorKind::memory_limit) == 2);
  CHECK(stats.memory.jobs_held_for_memory == 0);
}

TEST_CASE("with no worker running a job or leaving, the waiting job runs whatever the figures") {
  PoolOptions options = quiet_options(1);
  options.memory_budget.bytes = 64 * MiB;
  Pool pool(options);
  REQUIRE(pool.submit("leak_mb", procpool::test::encode_value(std::uint32_t{48})).get().ok());
  REQUIRE(eventually([&] { return pool.stats().memory.budget_in_use_bytes > 48 * MiB; }));
  SubmitOptions expects;
  expects.expected_memory_bytes = 32 * MiB;  // does not fit beside the 48 MiB kept
  CHECK(text(pool.submit("echo", procpool::test::bytes("ran"), expects).get().value()) == "ran");
  CHECK(pool.stats().memory.jobs_held_for_memory == 0);
}

TEST_CASE("while a job waits for the budget, idle workers above min_workers give memory back") {
#ifdef PROCPOOL_TEST_TSAN
  PROCPOOL_SKIP("150 MiB leaks under the thread sanitizer's shadow memory");
#endif
  PoolOptions options = quiet_options(2);
  options.min_workers = 1;
  options.memory_budget.bytes = 400 * MiB;
  Pool pool(options);
  {
    // Two workers, each keeping 150 MiB.
    Gate a, b;
    auto first = pool.submit("leak_mb_wait_fifo", leak_then_wait(150, a));
    auto second = pool.submit("leak_mb_wait_fifo", leak_then_wait(150, b));
    a.release();
    b.release();
    REQUIRE(first.get().ok());
    REQUIRE(second.get().ok());
  }
  REQUIRE(eventually([&] {
    PoolStats s = pool.stats();
    return idle_workers(s) == 2 && s.memory.budget_in_use_bytes > 300 * MiB;
  }));
  Gate busy;
  SubmitOptions small, large;
  small.expected_memory_bytes = 8 * MiB;
  large.expected_memory_bytes = 100 * MiB;
  auto holder = pool.submit("wait_fifo", busy.payload(), small);
  REQUIRE(eventually([&] { return pool.stats().in_flight == 1; }));
  // 300+ MiB kept and 8 MiB expected: 100 MiB more does not fit while the held job runs.
  auto waiting = pool.submit("echo", procpool::test::bytes("room"), large);
  CHECK(text(waiting.get().value()) == "room");
  PoolStats stats = pool.stats();
  CHECK(stats.recycles(RecycleReason::memory_budget) == 1);
  CHECK(stats.memory.jobs_held_for_memory == 1);
  busy.release();
  CHECK(holder.get().ok());
}

TEST_CASE("an \"auto\" budget is a fraction of the host's memory cgroup limit") {
  std::string why_not;
  auto limited = TestCgroup::make(1024 * MiB, why_not);
  if (!limited) PROCPOOL_SKIP(why_not);
  // This test process joins the limited cgroup while its pool lives, and leaves it after.
  auto move_self = [](const std::string& cgroup) {
    std::ofstream procs(cgroup + "/cgroup.procs");
    procs << ::getpid() << std::flush;
    return static_cast<bool>(procs);
  };
  REQUIRE(move_self(limited->directory()));
  PoolStats stats;
  {
    PoolOptions options = quiet_options(1);
    options.memory_budget.host_limit_fraction = 0.5;
    Pool pool(options);
    CHECK(text(pool.submit("echo", procpool::test::bytes("in")).get().value()) == "in");
    stats = pool.stats();
  }
  REQUIRE(move_self(limited->parent()));
  CHECK(stats.memory.budget_bytes == 512 * MiB);
}
