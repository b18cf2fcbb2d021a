// Every submitted job gets exactly one outcome, whose kind says what happened; a pool that lost a
// worker replaces it and keeps serving.
#include <signal.h>
#include <unistd.h>

#include <procpool/procpool.hpp>
#include <thread>

#include "catch.hpp"
#include "test_support.hpp"

using namespace procpool;
using namespace std::chrono_literals;
using test::bytes;
using test::text;

namespace {

JobError error_of(JobResult result) {
  REQUIRE_FALSE(result.ok());
  return std::move(result).error();
}

void check_still_serving(Pool& pool) {
  JobResult after = pool.submit("echo", bytes("still here")).get();
  REQUIRE(after.ok());
  CHECK(text(after.value()) == "still here");
}

}  // namespace

TEST_CASE("a handler that throws fails its job with the exception's message; the worker lives on") {
  Pool pool(test::quiet_options(1));
  JobError error = error_of(pool.submit("fail", bytes("boom")).get());
  CHECK(error.kind == ErrorKind::handler_error);
  CHECK(error.message == "handler failed: boom");
  CHECK(error.attempts == 1);
  JobError non_std = error_of(pool.submit("throw_int", Bytes{}).get());
  CHECK(non_std.kind == ErrorKind::handler_error);
  CHECK(non_std.message.find("non-std::exception") != std::string::npos);
  check_still_serving(pool);
  CHECK(pool.stats().workers_started == 1);
}

TEST_CASE("a worker killed by a signal fails its job with the signal; a replacement serves on") {
  Pool pool(test::quiet_options(1));
  JobError error = error_of(pool.submit("sigkill", Bytes{}).get());
  CHECK(error.kind == ErrorKind::worker_crashed);
  CHECK(error.signal == SIGKILL);
  CHECK(error.message.find("SIGKILL") != std::string::npos);
  CHECK(error.message.find("sigkill") != std::string::npos);
  check_still_serving(pool);
  CHECK(pool.stats().workers_started == 2);
}

TEST_CASE("a segfault and an abort are crashes") {
  Pool pool(test::quiet_options(1));
  JobError segv = error_of(pool.submit("segv", Bytes{}).get());
  CHECK(segv.kind == ErrorKind::worker_crashed);
#if !defined(PROCPOOL_TEST_SANITIZED)  // AddressSanitizer turns SIGSEGV into a report and exit(1)
  CHECK(segv.signal == SIGSEGV);
#endif
  JobError aborted = error_of(pool.submit("abort", Bytes{}).get());
  CHECK(aborted.kind == ErrorKind::worker_crashed);
  CHECK(aborted.signal == SIGABRT);
  check_still_serving(pool);
}

TEST_CASE("a worker that exits mid-job fails it with the exit code and its last stderr lines") {
  Pool pool(test::quiet_options(1));
  JobError error = error_of(pool.submit("stderr_then_exit", Bytes{}).get());
  CHECK(error.kind == ErrorKind::worker_crashed);
  CHECK(error.exit_code == 9);
  CHECK_FALSE(error.signal.has_value());
  CHECK(error.message.find("exited with code 9") != std::string::npos);
  CHECK(error.worker_stderr == "first line\nlast words before exit\n");
  Bytes code{std::byte{42}};
  CHECK(error_of(pool.submit("exit", code).get()).exit_code == 42);
  check_still_serving(pool);
}

TEST_CASE("a job over its timeout is stopped with SIGTERM and fails with timeout") {
  Pool pool(test::quiet_options(1));
  SubmitOptions options;
  options.timeout = 100ms;
  JobError error = error_of(pool.submit("hang", Bytes{}, options).get());
  CHECK(error.kind == ErrorKind::timeout);
  CHECK(error.signal == SIGTERM);
  CHECK(error.message.find("100 ms") != std::string::npos);
  check_still_serving(pool);
}

TEST_CASE("a job that ignores SIGTERM is SIGKILLed after the grace period") {
  PoolOptions options = test::quiet_options(1);
  options.kill_grace = 100ms;
  options.job_timeout = 100ms;  // the pool-wide default applies when the job sets none
  Pool pool(options);
  JobError error = error_of(pool.submit("hang_ignoring_term", Bytes{}).get());
  CHECK(error.kind == ErrorKind::timeout);
  CHECK(error.signal == SIGKILL);
  check_still_serving(pool);
}

TEST_CASE("a queued job can be cancelled; a running one cannot") {
  Pool pool(test::quiet_options(1));
  test::StartMark mark;
  JobFuture running = pool.submit("mark_then_hang", mark.payload());
  REQUIRE(test::eventually([&] { return mark.seen(); }));
  JobFuture queued = pool.submit("echo", bytes("never"));
  CHECK(pool.cancel(queued.id()));
  CHECK_FALSE(pool.cancel(queued.id()));  // already gone
  CHECK_FALSE(pool.cancel(running.id()));
  CHECK_FALSE(pool.cancel(987654321));
  JobError error = error_of(queued.get());
  CHECK(error.kind == ErrorKind::cancelled);
  CHECK(pool.stats().failures(ErrorKind::cancelled) == 1);
  pool.shutdown(0ms);
  CHECK(error_of(running.get()).kind == ErrorKind::shutting_down);
}

TEST_CASE("a full queue rejects new jobs at once with queue_full") {
  PoolOptions options = test::quiet_options(1);
  options.queue_capacity = 2;
  Pool pool(options);
  JobFuture running = pool.submit("hang", Bytes{});
  REQUIRE(test::eventually([&] { return pool.stats().in_flight == 1; }));
  JobFuture a = pool.submit("echo", bytes("a"));
  JobFuture b = pool.submit("echo", bytes("b"));
  JobFuture rejected = pool.submit("echo", bytes("c"));
  REQUIRE(rejected.wait_for(0s) == std::future_status::ready);
  JobError error = error_of(rejected.get());
  CHECK(error.kind == ErrorKind::queue_full);
  CHECK(error.message.find("queue_capacity") != std::string::npos);
  pool.shutdown(0ms);
  CHECK(error_of(a.get()).kind == ErrorKind::shutting_down);
  CHECK(error_of(b.get()).kind == ErrorKind::shutting_down);
  CHECK(error_of(running.get()).kind == ErrorKind::shutting_down);
}

TEST_CASE("with the block policy, a full queue makes submit wait for room") {
  PoolOptions options = test::quiet_options(1);
  options.queue_capacity = 1;
  options.when_queue_full = QueueFullPolicy::block;
  Pool pool(options);
  test::Gate gate;
  JobFuture first = pool.submit("wait_fifo", gate.payload());
  REQUIRE(test::eventually([&] { return pool.stats().in_flight == 1; }));
  JobFuture second = pool.submit("echo", bytes("2"));
  std::thread releaser([&] { gate.release(); });
  JobFuture third = pool.submit("echo", bytes("3"));  // blocks until `second` leaves the queue
  releaser.join();
  CHECK(first.get().ok());
  CHECK(text(second.get().value()) == "2");
  CHECK(text(third.get().value()) == "3");
}

TEST_CASE("a blocked submitter is released with shutting_down when the pool stops") {
  PoolOptions options = test::quiet_options(1);
  options.queue_capacity = 1;
  options.when_queue_full = QueueFullPolicy::block;
  Pool pool(options);
  JobFuture running = pool.submit("hang", Bytes{});
  REQUIRE(test::eventually([&] { return pool.stats().in_flight == 1; }));
  JobFuture queued = pool.submit("echo", bytes("q"));
  std::promise<JobResult> blocked_result;
  std::thread blocked(
      [&] { blocked_result.set_value(pool.submit("echo", bytes("blocked")).get()); });
  pool.shutdown(0ms);
  blocked.join();
  CHECK(error_of(blocked_result.get_future().get()).kind == ErrorKind::shutting_down);
  CHECK(error_of(queued.get()).kind == ErrorKind::shutting_down);
  CHECK(error_of(running.get()).kind == ErrorKind::shutting_down);
}

TEST_CASE("shutdown drains queued and running jobs within its deadline") {
  Pool pool(test::quiet_options(2));
  std::vector<JobFuture> futures;
  std::uint32_t ms = 20;
  for (int i = 0; i < 6; ++i)
    futures.push_back(pool.submit("sleep_ms", test::encode_value(ms)));
  pool.shutdown(30s);
  for (auto& f : futures)
    CHECK(f.get().ok());
  CHECK(error_of(pool.submit("echo", bytes("late")).get()).kind == ErrorKind::shutting_down);
  pool.shutdown(0ms);  // a second call does nothing
  CHECK(pool.stats().health == PoolHealth::stopped);
  CHECK(pool.stats().workers.empty());
}

TEST_CASE("destroying a pool with jobs queued and running gives each its outcome") {
  std::vector<JobFuture> futures;
  {
    PoolOptions options = test::quiet_options(1);
    options.destructor_drain = 0ms;
    Pool pool(options);
    futures.push_back(pool.submit("hang", Bytes{}));
    REQUIRE(test::eventually([&] { return pool.stats().in_flight == 1; }));
    futures.push_back(pool.submit("echo", bytes("queued")));
  }
  for (auto& f : futures)
    CHECK(error_of(f.get()).kind == ErrorKind::shutting_down);
  CHECK(test::zombie_children(::getpid()).empty());
}

TEST_CASE("an unknown job name is reported by the worker as unknown_job") {
  Pool pool(test::quiet_options(1));
  JobError error = error_of(pool.submit("no-such-job", Bytes{}).get());
  CHECK(error.kind == ErrorKind::unknown_job);
  CHECK(error.message.find("no-such-job") != std::string::npos);
  check_still_serving(pool);
}

TEST_CASE("payloads and results over the limits fail with payload_too_large") {
  PoolOptions options = test::quiet_options(1);
  options.max_payload_bytes = 1000;
  options.max_result_bytes = 2000;
  Pool pool(options);
  JobError too_big = error_of(pool.submit("echo", Bytes(1001)).get());
  CHECK(too_big.kind == ErrorKind::payload_too_large);
  CHECK(too_big.message.find("max_payload_bytes") != std::string::npos);
  CHECK(pool.submit("echo", Bytes(1000)).get().ok());
  std::uint64_t n = 2001;
  JobError result_too_big = error_of(pool.submit("produce", test::encode_value(n)).get());
  CHECK(result_too_big.kind == ErrorKind::payload_too_large);
  CHECK(result_too_big.message.find("max_result_bytes") != std::string::npos);
  check_still_serving(pool);
}

TEST_CASE("malformed requests fail with invalid_request before reaching a worker") {
  Pool pool(test::quiet_options(1));
  CHECK(error_of(pool.submit("", Bytes{}).get()).kind == ErrorKind::invalid_request);
  CHECK(error_of(pool.submit(std::string(300, 'n'), Bytes{}).get()).kind ==
        ErrorKind::invalid_request);
  SubmitOptions zero_attempts;
  zero_attempts.max_attempts = 0;
  CHECK(error_of(pool.submit("echo", Bytes{}, zero_attempts).get()).kind ==
        ErrorKind::invalid_request);
  SubmitOptions retries_without_idempotence;
  retries_without_idempotence.max_attempts = 3;
  JobError error = error_of(pool.submit("echo", Bytes{}, retries_without_idempotence).get());
  CHECK(error.kind == ErrorKind::invalid_request);
  CHECK(error.message.find("idempotent") != std::string::npos);
}

TEST_CASE(
    "a worker writing garbage into its response ring is killed; its job fails as a protocol "
    "violation") {
  Pool pool(test::quiet_options(1));
  for (const char* mode : {"length", "position", "job_id", "random", "scribble"}) {
    INFO(mode);
    JobError error = error_of(pool.submit("garbage", bytes(mode)).get());
    CHECK(error.kind == ErrorKind::protocol_violation);
    CHECK(error.signal == SIGKILL);
    check_still_serving(pool);
  }
  CHECK(pool.stats().failures(ErrorKind::protocol_violation) == 5);
}

TEST_CASE("an idempotent job is retried on another worker after a crash or a timeout") {
  Pool pool(test::quiet_options(2));
  SubmitOptions retry;
  retry.idempotent = true;
  retry.max_attempts = 3;
  JobResult crashed_once = pool.submit("crash_first_attempt", Bytes{}, retry).get();
  REQUIRE(crashed_once.ok());
  CHECK(text(crashed_once.value()) == "attempt 2");

  retry.timeout = 100ms;
  JobResult timed_out_once = pool.submit("timeout_first_attempt", Bytes{}, retry).get();
  REQUIRE(timed_out_once.ok());
  CHECK(text(timed_out_once.value()) == "attempt 2");
  CHECK(pool.stats().retries == 2);
}

TEST_CASE(
    "retries stop at max_attempts, and never follow a handler error or a non-idempotent crash") {
  Pool pool(test::quiet_options(2));
  SubmitOptions retry;
  retry.idempotent = true;
  retry.max_attempts = 2;
  JobError always_crashes = error_of(pool.submit("sigkill", Bytes{}, retry).get());
  CHECK(always_crashes.kind == ErrorKind::worker_crashed);
  CHECK(always_crashes.attempts == 2);

  JobError handler = error_of(pool.submit("fail", bytes("x"), retry).get());
  CHECK(handler.kind == ErrorKind::handler_error);
  CHECK(handler.attempts == 1);

  JobError not_idempotent = error_of(pool.submit("crash_first_attempt", Bytes{}).get());
  CHECK(not_idempotent.kind == ErrorKind::worker_crashed);
  CHECK(not_idempotent.attempts == 1);
  CHECK(pool.stats().retries == 1);
}

TEST_CASE("a worker binary that cannot start degrades the pool, which then fails fast") {
  // A "worker" that exits at once: every start fails.
  PoolOptions options = test::quiet_options(1);
  options.worker_command = {"/bin/false"};
  options.restart_storm_threshold = 3;
  options.restart_backoff_initial = 1ms;
  options.restart_backoff_max = 20ms;
  Pool pool(options);
  JobFuture queued = pool.submit("echo", bytes("x"));
  JobError error = error_of(queued.get());
  CHECK(error.kind == ErrorKind::pool_degraded);
  CHECK(error.message.find("failed to start") != std::string::npos);
  CHECK(pool.stats().health == PoolHealth::degraded);
  JobFuture fast = pool.submit("echo", bytes("y"));
  REQUIRE(fast.wait_for(0s) == std::future_status::ready);
  CHECK(error_of(fast.get()).kind == ErrorKind::pool_degraded);
  CHECK(pool.stats().start_failures >= 3);
}

TEST_CASE("a callback that throws is contained and logged") {
  std::mutex mutex;
  std::vector<std::string> lines;
  PoolOptions options = test::quiet_options(1);
  options.log = [&](LogLevel, std::string_view line) {
    std::lock_guard lock(mutex);
    lines.emplace_back(line);
  };
  Pool pool(options);
  pool.submit("echo", Bytes{}, SubmitOptions{},
              [](JobResult) { throw std::runtime_error("callback bug"); });
  check_still_serving(pool);
  std::lock_guard lock(mutex);
  bool logged = std::any_of(lines.begin(), lines.end(), [](const std::string& l) {
    return l.find("callback bug") != std::string::npos;
  });
  CHECK(logged);
}
