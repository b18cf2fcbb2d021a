// Pool::call runs one job and waits for it, handing the job to an idle worker from the calling
// thread when it can: it returns what submit().get() returns in every case (results of every size,
// failures, crashes, timeouts, retirements), leaves the supervisor thread asleep on a shared CPU,
// and still delivers events from the supervisor thread.
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <fstream>
#include <future>
#include <mutex>
#include <procpool/procpool.hpp>
#include <string>
#include <thread>
#include <vector>

#include "catch.hpp"
#include "test_support.hpp"

using namespace procpool;
using test::bytes;
using test::text;

namespace {

// Context switches of every thread of this process but the calling one (the supervisor thread,
// in these tests).
std::uint64_t other_threads_switches() {
  return test::context_switches(::getpid(), static_cast<int>(::syscall(SYS_gettid)));
}

Bytes produce_payload(std::uint64_t n) {
  return test::encode_value(n);
}

bool is_produced(const Bytes& out, std::uint64_t n) {
  if (out.size() != n) return false;
  for (std::uint64_t i = 0; i < n; ++i) {
    if (out[i] != static_cast<std::byte>((i * 31 + 7) & 0xff)) return false;
  }
  return true;
}

}  // namespace

TEST_CASE("call returns what submit().get() returns: results of every size, failures, refusals") {
  Pool pool(test::quiet_options(1));  // 64 KiB rings: the larger results stream out
  for (std::uint64_t n : {std::uint64_t{0}, std::uint64_t{5}, std::uint64_t{40'000},
                          std::uint64_t{300'000}, std::uint64_t{3'000'000}}) {
    INFO("result of " << n << " bytes");
    JobResult direct = pool.call("produce", produce_payload(n));
    REQUIRE(direct.ok());
    CHECK(is_produced(direct.value(), n));
  }
  JobResult echoed = pool.call("echo", bytes("hello"));
  REQUIRE(echoed.ok());
  CHECK(text(echoed.value()) == "hello");

  JobResult failed = pool.call("fail", bytes("on purpose"));
  REQUIRE_FALSE(failed.ok());
  CHECK(failed.error().kind == ErrorKind::handler_error);
  CHECK(failed.error().message.find("on purpose") != std::string::npos);

  JobResult unknown = pool.call("no_such_job", Bytes{});
  REQUIRE_FALSE(unknown.ok());
  CHECK(unknown.error().kind == ErrorKind::unknown_job);

  Result<std::string> typed = pool.call<test::EchoText>(std::string("typed"));
  REQUIRE(typed.ok());
  CHECK(typed.value() == "typed");

  // A payload larger than the ring streams in through the supervisor thread.
  Bytes big(1'000'000);
  for (std::size_t i = 0; i < big.size(); ++i)
    big[i] = static_cast<std::byte>(i % 251);
  JobResult big_echo = pool.call("echo", Bytes(big));
  REQUIRE(big_echo.ok());
  CHECK(big_echo.value() == big);

  auto stats = pool.stats();
  CHECK(stats.succeeded == 8);
  CHECK(stats.failed == 2);
}

TEST_CASE("call on a worker sharing the caller's CPU leaves the supervisor thread asleep") {
  test::PinnedToOneCpu pinned;  // caller, supervisor thread and worker all on one CPU
  Pool pool(test::quiet_options(1));
  // The first calls wait for the worker to start and to say which CPU it waits on.
  for (int i = 0; i < 3; ++i)
    REQUIRE(pool.call("echo", bytes("warm-up")).ok());
  constexpr int calls = 200;
  const std::uint64_t before = other_threads_switches();
  for (int i = 0; i < calls; ++i) {
    JobResult r = pool.call("echo", bytes(std::to_string(i)));
    REQUIRE(r.ok());
    REQUIRE(text(r.value()) == std::to_string(i));
  }
  const std::uint64_t supervisor_switches = other_threads_switches() - before;
  INFO("supervisor thread context switches over " << calls << " calls: " << supervisor_switches);
  // Through the supervisor thread each job costs it two switches at least (400 here).
  CHECK(supervisor_switches < calls / 4);

  // submit().get() on the same pool goes through the supervisor thread, as before.
  const std::uint64_t before_submits = other_threads_switches();
  for (int i = 0; i < calls; ++i)
    REQUIRE(pool.submit("echo", bytes("x")).get().ok());
  CHECK(other_threads_switches() - before_submits >= std::uint64_t{calls});
}

TEST_CASE("a worker that dies during a call gives the call its crash, and the pool goes on") {
  test::PinnedToOneCpu pinned;
  Pool pool(test::quiet_options(1));
  REQUIRE(pool.call("echo", bytes("up")).ok());
  JobResult crashed = pool.call("segv", Bytes{});
  REQUIRE_FALSE(crashed.ok());
  CHECK(crashed.error().kind == ErrorKind::worker_crashed);
  JobResult after = pool.call("echo", bytes("replaced"));
  REQUIRE(after.ok());
  CHECK(text(after.value()) == "replaced");

  // An idempotent job whose worker crashes on the first attempt is retried on the replacement.
  SubmitOptions retry;
  retry.idempotent = true;
  retry.max_attempts = 2;
  JobResult retried = pool.call("crash_first_attempt", Bytes{}, retry);
  REQUIRE(retried.ok());
}

TEST_CASE("a worker that dies during a call ends the call at once, with no timer due") {
  // The caller waits for the result until the worker's next timer; the only one here is the
  // memory sample, a minute away. When the worker exits, the supervisor thread must wake it.
  test::PinnedToOneCpu pinned;
  PoolOptions options = test::quiet_options(1);
  options.recycle.memory_sample_interval = std::chrono::minutes(1);
  Pool pool(options);
  REQUIRE(pool.call("echo", bytes("up")).ok());
  const int worker = pool.stats().workers.at(0).pid;
  std::atomic<long> caller{0};
  auto killed = std::async(std::launch::async, [&] {
    caller = ::syscall(SYS_gettid);
    return pool.call("hang", Bytes{});
  });
  // Killed only once the caller sleeps on the worker's ring (nothing else here takes a futex),
  // so that only the supervisor thread's wake-up can end its wait.
  REQUIRE(test::eventually([&] {
    if (caller == 0) return false;
    std::ifstream wchan("/proc/self/task/" + std::to_string(caller.load()) + "/wchan");
    std::string where;
    wchan >> where;
    return where.find("futex") != std::string::npos;
  }));
  REQUIRE(::kill(worker, SIGKILL) == 0);
  REQUIRE(killed.wait_for(std::chrono::seconds(20)) == std::future_status::ready);
  JobResult r = killed.get();
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().kind == ErrorKind::worker_crashed);
}

TEST_CASE("a call's job is sampled for memory while it runs, and killed over the hard limit") {
  // The supervisor thread sleeps through a direct call; the caller hands the job back to it when
  // the memory sample is due, or a job that balloons and then hangs would never be stopped.
  test::PinnedToOneCpu pinned;
  PoolOptions options = test::quiet_options(1);
  options.recycle.memory_sample_interval = std::chrono::milliseconds(20);
  options.recycle.memory_hard_limit = std::size_t{96} << 20;
  Pool pool(options);
  REQUIRE(pool.call("echo", bytes("up")).ok());
  auto ballooned = std::async(std::launch::async, [&] {
    return pool.call("balloon_mb", test::encode_value(std::uint32_t{2000}));
  });
  REQUIRE(ballooned.wait_for(std::chrono::seconds(60)) == std::future_status::ready);
  JobResult r = ballooned.get();
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().kind == ErrorKind::memory_limit);
}

TEST_CASE("a call that outlives its timeout is stopped, one that runs long finishes") {
  test::PinnedToOneCpu pinned;
  Pool pool(test::quiet_options(1));
  REQUIRE(pool.call("echo", bytes("up")).ok());
  SubmitOptions short_timeout;
  short_timeout.timeout = std::chrono::milliseconds(50);
  JobResult hung = pool.call("hang", Bytes{}, short_timeout);
  REQUIRE_FALSE(hung.ok());
  CHECK(hung.error().kind == ErrorKind::timeout);

  // Held running on a gate until another thread releases it, for as long as that takes.
  test::Gate gate;
  std::thread releaser([&] { gate.release(); });
  JobResult held = pool.call("wait_fifo", gate.payload());
  releaser.join();
  REQUIRE(held.ok());
  CHECK(text(held.value()) == "released");
}

TEST_CASE("a call's events and log lines come from the supervisor thread") {
  test::PinnedToOneCpu pinned;
  std::mutex mutex;
  std::vector<std::thread::id> event_threads, log_threads;
  std::atomic<bool> job_failed_seen{false};
  PoolOptions options = test::quiet_options(1);
  options.on_event = [&](const PoolEvent& event) {
    std::lock_guard lock(mutex);
    event_threads.push_back(std::this_thread::get_id());
    if (event.type == EventType::job_failed) job_failed_seen = true;
  };
  options.log = [&](LogLevel, std::string_view) {
    std::lock_guard lock(mutex);
    log_threads.push_back(std::this_thread::get_id());
  };
  Pool pool(options);
  REQUIRE(pool.call("echo", bytes("up")).ok());
  REQUIRE(pool.call("echo", bytes("again")).ok());
  JobResult failed = pool.call("fail", bytes("for an event"));
  REQUIRE_FALSE(failed.ok());
  REQUIRE(test::eventually([&] { return job_failed_seen.load(); }));
  std::lock_guard lock(mutex);
  for (auto id : event_threads)
    CHECK(id != std::this_thread::get_id());
  for (auto id : log_threads)
    CHECK(id != std::this_thread::get_id());
}

TEST_CASE("a call on a worker's last job (max_jobs) retires it and starts its replacement") {
  test::PinnedToOneCpu pinned;
  PoolOptions options = test::quiet_options(1);
  options.recycle.max_jobs = 2;
  Pool pool(options);
  std::vector<std::string> pids;
  for (int i = 0; i < 6; ++i) {
    JobResult r = pool.call("pid", Bytes{});
    REQUIRE(r.ok());
    pids.push_back(text(r.value()));
  }
  // Two jobs per worker: three workers in turn.
  CHECK(pids[0] == pids[1]);
  CHECK(pids[1] != pids[2]);
  CHECK(pids[2] == pids[3]);
  CHECK(pids[3] != pids[4]);
  CHECK(pids[4] == pids[5]);
}

TEST_CASE("calls from many threads, beside submits, each get their own outcome") {
  Pool pool(test::quiet_options(2));
  constexpr int threads = 4, per_thread = 300;
  std::atomic<int> wrong{0}, callbacks_ok{0};
  std::vector<std::thread> callers;
  for (int t = 0; t < threads; ++t) {
    callers.emplace_back([&, t] {
      for (int i = 0; i < per_thread; ++i) {
        const std::string payload = std::to_string(t) + ":" + std::to_string(i);
        if (i % 3 == 0) {
          pool.submit("echo", bytes(payload), {}, [&, payload](JobResult r) {
            if (r.ok() && text(r.value()) == payload) ++callbacks_ok;
          });
        }
        JobResult r = pool.call("echo", bytes(payload));
        if (!r.ok() || text(r.value()) != payload) ++wrong;
      }
    });
  }
  for (auto& caller : callers)
    caller.join();
  CHECK(wrong == 0);
  pool.shutdown(std::chrono::seconds(10));
  CHECK(callbacks_ok == threads * per_thread / 3);
  CHECK(pool.stats().succeeded == threads * per_thread * 4 / 3);
}

TEST_CASE("a call from a completion callback is refused rather than waiting for itself") {
  Pool pool(test::quiet_options(1));
  std::optional<JobResult> inner;
  std::atomic<bool> done{false};
  pool.submit("echo", bytes("outer"), {}, [&](JobResult) {
    inner = pool.call("echo", bytes("inner"));
    done = true;
  });
  REQUIRE(test::eventually([&] { return done.load(); }));
  REQUIRE(inner);
  REQUIRE_FALSE(inner->ok());
  CHECK(inner->error().kind == ErrorKind::invalid_request);
}

TEST_CASE("a call on a stopped pool is refused") {
  Pool pool(test::quiet_options(1));
  REQUIRE(pool.call("echo", bytes("up")).ok());
  pool.shutdown();
  JobResult late = pool.call("echo", bytes("late"));
  REQUIRE_FALSE(late.ok());
  CHECK(late.error().kind == ErrorKind::shutting_down);
}

TEST_CASE(
    "call_in_place returns what submit_in_place().get() returns, and leaves the supervisor "
    "thread asleep on a shared CPU") {
  test::PinnedToOneCpu pinned;
  Pool pool(test::quiet_options(1));
  REQUIRE(pool.call("echo", bytes("up")).ok());
  LentBuffer input = pool.lend(1 << 20);
  LentBuffer output = pool.lend(1 << 20);
  for (std::size_t i = 0; i < input.size(); ++i)
    input.bytes()[i] = static_cast<std::byte>((i * 131 + 5) & 0xff);

  Result<std::uint64_t> copied = pool.call_in_place("in_place_copy", input, output);
  REQUIRE(copied.ok());
  CHECK(copied.value() == input.size());
  CHECK(std::equal(input.bytes().begin(), input.bytes().end(), output.bytes().begin()));

  Result<std::uint64_t> overclaimed = pool.call_in_place("in_place_overclaim", input, output);
  REQUIRE_FALSE(overclaimed.ok());
  CHECK(overclaimed.error().kind == ErrorKind::payload_too_large);
  Result<std::uint64_t> faulted = pool.call_in_place("in_place_write_input", input, output);
  REQUIRE_FALSE(faulted.ok());
  CHECK(faulted.error().kind == ErrorKind::worker_crashed);
  Result<std::uint64_t> same = pool.call_in_place("in_place_copy", input, input);
  REQUIRE_FALSE(same.ok());
  CHECK(same.error().kind == ErrorKind::invalid_request);
  Result<std::uint64_t> empty = pool.call_in_place("in_place_copy", LentBuffer(), output);
  REQUIRE_FALSE(empty.ok());
  CHECK(empty.error().kind == ErrorKind::invalid_request);
  Result<std::uint64_t> not_in_place = pool.call_in_place("echo", input, output);
  REQUIRE_FALSE(not_in_place.ok());
  CHECK(not_in_place.error().kind == ErrorKind::unknown_job);

  SubmitOptions retry;
  retry.idempotent = true;
  retry.max_attempts = 2;
  std::fill(output.bytes().begin(), output.bytes().end(), std::byte{0});
  Result<std::uint64_t> retried =
      pool.call_in_place("in_place_crash_first_attempt", input, output, retry);
  REQUIRE(retried.ok());
  CHECK(std::equal(input.bytes().begin(), input.bytes().end(), output.bytes().begin()));

  REQUIRE(pool.call_in_place("in_place_copy", input, output).ok());  // on the replacement
  constexpr int calls = 100;
  const std::uint64_t before = other_threads_switches();
  for (int i = 0; i < calls; ++i)
    REQUIRE(pool.call_in_place("in_place_copy", input, output).ok());
  const std::uint64_t supervisor_switches = other_threads_switches() - before;
  INFO("supervisor thread context switches over " << calls << " calls: " << supervisor_switches);
  CHECK(supervisor_switches < calls / 4);
}

TEST_CASE("a call to a worker whose jobs outlast a poll is handed to it directly, on any CPU") {
  // Unpinned, with CPUs free for the supervisor thread to poll on: nobody polls for the result of
  // a job that takes longer than SpinPolicy::budget, so the caller takes it itself.
  PoolOptions options = test::quiet_options(1);
  REQUIRE(options.spin.budget < std::chrono::milliseconds(2));
  Pool pool(options);
  const Bytes two_ms = test::encode_value(std::uint32_t{2});
  for (int i = 0; i < 3; ++i)  // the worker starts, and learns how long its jobs take
    REQUIRE(pool.call("sleep_ms", two_ms).ok());
  constexpr int calls = 40;
  const std::uint64_t before = other_threads_switches();
  for (int i = 0; i < calls; ++i)
    REQUIRE(pool.call("sleep_ms", two_ms).ok());
  const std::uint64_t supervisor_switches = other_threads_switches() - before;
  INFO("supervisor thread context switches over " << calls << " calls: " << supervisor_switches);
  // Through the supervisor thread, each job wakes it twice (80 switches here). Direct, it wakes
  // only when a timer of the worker's falls due (its memory sample, every 250 ms), which a slow
  // build under load (a sanitizer beside another test) reaches a few times over these calls.
  CHECK(supervisor_switches < calls / 2);
}

TEST_CASE("a queued job's callback never runs on a Pool::call thread") {
#if defined(PROCPOOL_TEST_TSAN) || defined(__SANITIZE_ADDRESS__)
  PROCPOOL_SKIP(
      "a race hunted over 150 rounds against a flooding worker: too slow to mean anything "
      "under a sanitizer");
#endif
  // The interleaving: the caller sleeps on its worker's result; the supervisor thread, kept awake
  // and holding the state lock by a worker flooding its output, reads that result first, and could
  // then give the (still lent) worker the queued job, whose result would wake the caller, who
  // would read it and run its callback on its own thread.
  PoolOptions options = test::quiet_options(2);
  options.spin.enabled = false;  // nobody polls: calls are handed over directly
  Pool pool(options);
  REQUIRE(test::settled(pool, 2));
  // It floods until the pool is shut down (a sanitizer build takes minutes over the rounds).
  SubmitOptions bounded;
  bounded.timeout = std::chrono::minutes(30);
  JobFuture flood = pool.submit("flood_output", test::encode_value(std::uint32_t{0}), bounded);
  REQUIRE(test::eventually([&] { return pool.stats().in_flight == 1; }));
  int on_caller = 0;
  // Before the fix: 13 of 300 rounds ran the callback on the caller's thread.
  for (int round = 0; round < 150; ++round) {
    test::Gate gate;
    std::promise<std::thread::id> called_on;
    std::thread caller([&] {
      called_on.set_value(std::this_thread::get_id());
      CHECK(pool.call("wait_fifo", gate.payload()).ok());
    });
    const std::thread::id caller_id = called_on.get_future().get();
    // Not REQUIRE: the caller must be let go and joined whatever happens.
    CHECK(test::eventually([&] { return pool.stats().in_flight == 2; }));
    std::promise<std::thread::id> completed_on;
    pool.submit("echo", bytes("queued"), SubmitOptions{},
                [&](JobResult) { completed_on.set_value(std::this_thread::get_id()); });
    gate.release();
    const std::thread::id callback_id = completed_on.get_future().get();
    caller.join();
    if (callback_id == caller_id) ++on_caller;
  }
  CHECK(on_caller == 0);
  pool.shutdown(std::chrono::milliseconds(0));
}
