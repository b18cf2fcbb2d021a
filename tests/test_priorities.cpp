// Job priorities in a real pool: a busy worker's next job is the highest-priority one queued, in
// the order submitted within one priority; jobs sent ahead (prefetch) and jobs retried keep to
// that order; and priorities are strict: a low job waits for as long as higher ones keep coming.
#include <signal.h>

#include <memory>
#include <mutex>
#include <procpool/procpool.hpp>
#include <string>
#include <vector>

#include "catch.hpp"
#include "test_support.hpp"

using namespace procpool;
using test::bytes;
using test::text;

namespace {

// The order in which jobs' outcomes arrive, each as the label it was submitted with (a failure
// as "label: message", so that it shows in a failed comparison).
class CompletionOrder {
 public:
  Completion record(std::string label) {
    return [this, label = std::move(label)](JobResult result) {
      std::lock_guard lock(mutex_);
      labels_.push_back(result.ok() ? label : label + ": " + result.error().message);
    };
  }
  std::vector<std::string> labels() {
    std::lock_guard lock(mutex_);
    return labels_;
  }
  std::size_t size() { return labels().size(); }

 private:
  std::mutex mutex_;
  std::vector<std::string> labels_;
};

SubmitOptions with_priority(int priority) {
  SubmitOptions options;
  options.priority = priority;
  return options;
}

bool holds(const Pool& pool, std::size_t in_flight, std::size_t queued) {
  PoolStats stats = pool.stats();
  return stats.in_flight == in_flight && stats.queued == queued;
}

// One worker that gives a busy worker nothing ahead: each job leaves the queue when the worker is
// free for it.
PoolOptions one_at_a_time() {
  PoolOptions options = test::quiet_options(1);
  options.prefetch.max_jobs_ahead = 0;
  return options;
}

}  // namespace

TEST_CASE("queued jobs run highest priority first, in the order submitted within one priority") {
  CompletionOrder order;  // outlives the pool, whose callbacks write to it
  Pool pool(one_at_a_time());
  test::Gate gate;
  pool.submit("wait_fifo", gate.payload(), {}, order.record("held"));
  REQUIRE(test::eventually([&] { return holds(pool, 1, 0); }));

  pool.submit("echo", bytes("low"), with_priority(-3), order.record("low"));
  pool.submit("echo", bytes("high"), with_priority(7), order.record("high"));
  pool.submit("echo", bytes("mid"), with_priority(0), order.record("mid"));
  pool.submit("echo", bytes("high 2"), with_priority(7), order.record("high 2"));
  pool.submit("echo", bytes("low 2"), with_priority(-3), order.record("low 2"));
  pool.submit("echo", bytes("mid 2"), {}, order.record("mid 2"));  // the default is 0
  REQUIRE(test::eventually([&] { return holds(pool, 1, 6); }));

  gate.release();
  REQUIRE(test::eventually([&] { return order.size() == 7; }));
  CHECK(order.labels() ==
        std::vector<std::string>{"held", "high", "high 2", "mid", "mid 2", "low", "low 2"});
}

TEST_CASE("a retried job goes back ahead of the jobs of its priority, behind higher ones") {
  CompletionOrder order;
  Pool pool(one_at_a_time());
  JobResult pid = pool.submit("pid", Bytes{}).get();
  REQUIRE(pid.ok());
  test::Gate gate;
  SubmitOptions retried = with_priority(0);
  retried.idempotent = true;
  retried.max_attempts = 2;
  pool.submit("wait_fifo", gate.payload(), retried, order.record("retried"));
  REQUIRE(test::eventually([&] { return holds(pool, 1, 0); }));
  pool.submit("echo", bytes("low"), with_priority(-1), order.record("low"));
  pool.submit("echo", bytes("same"), with_priority(0), order.record("same"));
  pool.submit("echo", bytes("high"), with_priority(1), order.record("high"));
  REQUIRE(test::eventually([&] { return holds(pool, 1, 3); }));

  // Its worker dies under it: the job goes back into the queue as [high, retried, same, low].
  REQUIRE(::kill(std::stoi(text(pid.value())), SIGKILL) == 0);
  // The replacement runs "high", then the retried job, which waits on the gate again.
  REQUIRE(test::eventually([&] { return order.size() == 1; }));
  CHECK(order.labels() == std::vector<std::string>{"high"});
  gate.release();
  REQUIRE(test::eventually([&] { return order.size() == 4; }));
  CHECK(order.labels() == std::vector<std::string>{"high", "retried", "same", "low"});
  CHECK(pool.stats().retries == 1);
}

TEST_CASE("prefetch sends a busy worker the highest-priority jobs queued, never a lower one") {
  CompletionOrder order;
  PoolOptions options = test::quiet_options(1);
  options.prefetch.max_jobs_ahead = 2;
  options.prefetch.when_jobs_take_under = std::chrono::hours(1);
  options.prefetch.max_work_ahead = std::chrono::hours(1);
  Pool pool(options);
  REQUIRE(pool.submit("echo", bytes("warm-up")).get().ok());  // a job time, for prefetching
  test::Gate gate;
  pool.submit("wait_fifo", gate.payload(), {}, order.record("held"));
  REQUIRE(test::eventually([&] { return holds(pool, 1, 0); }));

  // Two low jobs are sent ahead while nothing higher waits; two more stay queued.
  for (const char* label : {"low 1", "low 2", "low 3", "low 4"})
    pool.submit("echo", bytes(label), with_priority(-1), order.record(label));
  REQUIRE(test::eventually([&] { return holds(pool, 3, 2); }));
  // Higher jobs come while the worker's two places ahead are taken.
  for (const char* label : {"mid 1", "mid 2"})
    pool.submit("echo", bytes(label), with_priority(0), order.record(label));
  for (const char* label : {"high 1", "high 2"})
    pool.submit("echo", bytes(label), with_priority(4), order.record(label));
  REQUIRE(test::eventually([&] { return holds(pool, 3, 6); }));

  // Each place ahead freed goes to the head of the queue: the higher jobs before low 3 and 4.
  gate.release();
  REQUIRE(test::eventually([&] { return order.size() == 9; }));
  CHECK(order.labels() == std::vector<std::string>{"held", "low 1", "low 2", "high 1", "high 2",
                                                   "mid 1", "mid 2", "low 3", "low 4"});
}

TEST_CASE("priorities are strict: a low job waits while higher ones keep coming") {
  CompletionOrder order;
  Pool pool(one_at_a_time());
  constexpr int rounds = 5;
  std::vector<std::unique_ptr<test::Gate>> gates;
  for (int i = 0; i <= rounds; ++i)
    gates.push_back(std::make_unique<test::Gate>());
  pool.submit("wait_fifo", gates[0]->payload(), with_priority(1), order.record("high 0"));
  REQUIRE(test::eventually([&] { return holds(pool, 1, 0); }));
  pool.submit("echo", bytes("low"), with_priority(0), order.record("low"));

  // Each round, one more high job arrives before the running one ends, and runs next: the low
  // job, queued first, is passed over every time.
  for (int i = 1; i <= rounds; ++i) {
    const std::string label = "high " + std::to_string(i);
    pool.submit("wait_fifo", gates[static_cast<std::size_t>(i)]->payload(), with_priority(1),
                order.record(label));
    REQUIRE(test::eventually([&] { return holds(pool, 1, 2); }));
    gates[static_cast<std::size_t>(i - 1)]->release();
    REQUIRE(test::eventually([&] { return order.size() == static_cast<std::size_t>(i); }));
    REQUIRE(test::eventually([&] {
      PoolStats stats = pool.stats();
      return stats.in_flight == 1 && stats.queued == 1 && stats.workers.size() == 1 &&
             stats.workers[0].current_job == "wait_fifo";
    }));
  }
  CHECK(order.size() == rounds);  // the low job has not run

  // When they stop, it runs.
  gates[rounds]->release();
  REQUIRE(test::eventually([&] { return order.size() == rounds + 2; }));
  std::vector<std::string> expected;
  for (int i = 0; i <= rounds; ++i)
    expected.push_back("high " + std::to_string(i));
  expected.push_back("low");
  CHECK(order.labels() == expected);
}
