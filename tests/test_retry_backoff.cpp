// SubmitOptions::retry_backoff: a job to be retried waits (half to all of the backoff, doubling per
// attempt) without holding a worker; while it waits it counts as queued, can be cancelled, can
// pass its deadline, and fails shutting_down at shutdown; exactly one outcome, always.
#include <chrono>
#include <procpool/procpool.hpp>
#include <string>

#include "catch.hpp"
#include "test_support.hpp"

using namespace procpool;
using test::bytes;
using test::text;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

namespace {

SubmitOptions retried(unsigned attempts, milliseconds backoff) {
  SubmitOptions options;
  options.idempotent = true;
  options.max_attempts = attempts;
  options.retry_backoff = backoff;
  return options;
}

PoolOptions one_worker() {
  PoolOptions options = test::quiet_options(1);
  options.restart_storm_threshold = 1000;
  return options;
}

}  // namespace

TEST_CASE("a retry waits its backoff, without holding a worker") {
  Pool pool(one_worker());
  REQUIRE(pool.submit("echo", bytes("warm")).get().ok());
  const Clock::time_point start = Clock::now();
  // Long enough for the failed worker's replacement to start and serve another job first, even
  // when starts are slow (a sanitizer).
  JobFuture flaky = pool.submit("crash_first_attempt", Bytes{}, retried(2, milliseconds(4000)));
  // Waiting for its retry: queued, not in flight, and the one worker serves others meanwhile.
  REQUIRE(test::eventually([&] {
    PoolStats stats = pool.stats();
    return stats.retries == 1 && stats.queued == 1 && stats.in_flight == 0;
  }));
  JobResult other = pool.submit("echo", bytes("meanwhile")).get();
  CHECK(text(other.value()) == "meanwhile");
  CHECK(flaky.wait_for(std::chrono::seconds(0)) == std::future_status::timeout);
  JobResult result = flaky.get();
  REQUIRE(result.ok());
  CHECK(text(result.value()) == "attempt 2");
  // At least half the backoff (the jitter's floor) passed before the second attempt.
  CHECK(Clock::now() - start >= milliseconds(2000));
}

TEST_CASE("the backoff doubles for each attempt") {
  Pool pool(one_worker());
  const Clock::time_point start = Clock::now();
  JobResult result = pool.submit("segv", Bytes{}, retried(3, milliseconds(200))).get();
  REQUIRE_FALSE(result.ok());
  CHECK(result.error().kind == ErrorKind::worker_crashed);
  CHECK(result.error().attempts == 3);
  // Waits of at least 100 ms, then 200 ms.
  CHECK(Clock::now() - start >= milliseconds(300));
  CHECK(pool.stats().retries == 2);
}

TEST_CASE("a job waiting for its retry can be cancelled") {
  Pool pool(one_worker());
  JobFuture flaky =
      pool.submit("crash_first_attempt", Bytes{}, retried(2, std::chrono::minutes(5)));
  REQUIRE(test::eventually([&] { return pool.stats().retries == 1; }));
  CHECK(pool.cancel(flaky.id()));
  REQUIRE(flaky.wait_for(std::chrono::seconds(0)) == std::future_status::ready);
  JobResult result = flaky.get();
  REQUIRE_FALSE(result.ok());
  CHECK(result.error().kind == ErrorKind::cancelled);
  CHECK(result.error().attempts == 1);
  CHECK(result.error().message == "cancelled while it waited to be retried");
  CHECK(pool.stats().queued == 0);
}

TEST_CASE("a job waiting for its retry fails at its deadline") {
  Pool pool(one_worker());
  REQUIRE(pool.submit("echo", bytes("warm")).get().ok());  // its first attempt runs well before
  SubmitOptions options = retried(2, std::chrono::minutes(5));
  options.deadline = Clock::now() + std::chrono::seconds(2);
  JobResult result = pool.submit("crash_first_attempt", Bytes{}, options).get();
  REQUIRE_FALSE(result.ok());
  CHECK(result.error().kind == ErrorKind::deadline_exceeded);
  CHECK(result.error().attempts == 1);
  CHECK(result.error().message.find("retried") != std::string::npos);
}

TEST_CASE("a job waiting for its retry fails shutting_down at shutdown") {
  Pool pool(one_worker());
  JobFuture flaky =
      pool.submit("crash_first_attempt", Bytes{}, retried(2, std::chrono::minutes(5)));
  REQUIRE(test::eventually([&] { return pool.stats().retries == 1; }));
  pool.shutdown();
  JobResult result = flaky.get();
  REQUIRE_FALSE(result.ok());
  CHECK(result.error().kind == ErrorKind::shutting_down);
  CHECK(result.error().attempts == 1);
}

TEST_CASE("a negative backoff is refused") {
  Pool pool(one_worker());
  SubmitOptions options = retried(2, milliseconds(-1));
  JobResult result = pool.submit("echo", bytes("x"), options).get();
  REQUIRE_FALSE(result.ok());
  CHECK(result.error().kind == ErrorKind::invalid_request);
  CHECK(result.error().message.find("retry_backoff") != std::string::npos);
}
