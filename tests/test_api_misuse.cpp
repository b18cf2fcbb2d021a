// Bad use of the API gets a clear error or a documented behaviour, never a crashed host. (Cases
// tested elsewhere: empty, over-long and unknown job names, payloads over the limit, submit after
// shutdown and a second shutdown with futures, destruction with futures in flight and a throwing
// completion callback in test_outcomes; contradictory options in test_config.)
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <future>
#include <mutex>
#include <procpool/procpool.hpp>
#include <string>
#include <thread>
#include <utility>

#include "catch.hpp"
#include "test_support.hpp"

using namespace procpool;
using procpool::test::LogLines;
using namespace std::chrono_literals;
using test::bytes;
using test::text;

namespace {

// A callback's outcome, handed to the test thread.
struct Delivered {
  std::mutex mutex;
  std::vector<JobResult> results;
  std::atomic<int> calls{0};

  Completion callback() {
    return [this](JobResult r) {
      std::lock_guard lock(mutex);
      results.push_back(std::move(r));
      calls.fetch_add(1);
    };
  }
};

bool idle(Pool& pool) {
  PoolStats s = pool.stats();
  return s.tracked_jobs == 0 && s.in_flight == 0 && s.queued == 0;
}

}  // namespace

TEST_CASE("misuse: futures dropped unread still run their jobs and leave nothing tracked") {
  Pool pool(test::quiet_options(2));
  for (int i = 0; i < 50; ++i) {
    (void)pool.submit("echo", bytes("dropped"));
    (void)pool.submit("fail", bytes("dropped"));
  }
  std::uint32_t ms = 20;
  { JobFuture dropped_while_running = pool.submit("sleep_ms", test::encode_value(ms)); }
  REQUIRE(test::eventually([&] { return pool.stats().succeeded + pool.stats().failed == 101; }));
  CHECK(pool.stats().succeeded == 51);
  CHECK(pool.stats().failures(ErrorKind::handler_error) == 50);
  CHECK(test::eventually([&] { return idle(pool); }));
  CHECK(text(pool.submit("echo", bytes("read")).get().value()) == "read");
}

TEST_CASE("misuse: after shutdown every submit form fails with shutting_down at once") {
  Pool pool(test::quiet_options(1));
  pool.shutdown();
  JobFuture future = pool.submit("echo", bytes("x"));
  REQUIRE(future.wait_for(0s) == std::future_status::ready);
  JobError error = future.get().error();
  CHECK(error.kind == ErrorKind::shutting_down);
  CHECK_FALSE(error.message.empty());

  Delivered delivered;
  pool.submit("echo", bytes("x"), SubmitOptions{}, delivered.callback());
  REQUIRE(delivered.calls == 1);  // on this thread, before submit returned
  CHECK(delivered.results[0].error().kind == ErrorKind::shutting_down);

  CHECK_FALSE(pool.cancel(future.id()));
  CHECK(pool.stats().health == PoolHealth::stopped);
}

TEST_CASE("misuse: shutdown from two threads at once, then the destructor, is harmless") {
  PoolOptions options = test::quiet_options(2);
  Pool pool(options);
  JobFuture running = pool.submit("hang", Bytes{});
  REQUIRE(test::eventually([&] { return pool.stats().in_flight == 1; }));
  std::thread other([&] { pool.shutdown(0ms); });
  pool.shutdown(0ms);
  other.join();
  CHECK(running.get().error().kind == ErrorKind::shutting_down);
  pool.shutdown(10s);  // a third call does nothing, and returns at once
  CHECK(pool.stats().workers.empty());
}

TEST_CASE("misuse: destroying a pool with callback jobs in flight calls each callback once") {
  Delivered delivered;
  {
    PoolOptions options = test::quiet_options(1);
    options.destructor_drain = 0ms;
    Pool pool(options);
    pool.submit("hang", Bytes{}, SubmitOptions{}, delivered.callback());
    REQUIRE(test::eventually([&] { return pool.stats().in_flight == 1; }));
    for (int i = 0; i < 10; ++i)
      pool.submit("echo", bytes("queued"), SubmitOptions{}, delivered.callback());
  }
  CHECK(delivered.calls == 11);
  for (const auto& r : delivered.results) {
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().kind == ErrorKind::shutting_down);
  }
  CHECK(test::zombie_children(::getpid()).empty());
}

TEST_CASE("misuse: shutdown called from a completion callback is logged and ignored") {
  LogLines log;
  PoolOptions options = test::quiet_options(1);
  options.log = log.sink();
  Pool pool(options);
  std::promise<void> called;
  pool.submit("echo", bytes("x"), SubmitOptions{}, [&](JobResult) {
    pool.shutdown();  // a programming error: documented to log and return
    called.set_value();
  });
  called.get_future().get();
  CHECK(log.contains("shutdown called from a completion callback"));
  CHECK(pool.stats().health == PoolHealth::healthy);
  CHECK(text(pool.submit("echo", bytes("on")).get().value()) == "on");
}

TEST_CASE("misuse: a callback submitting into a full blocking queue gets queue_full, not a hang") {
  PoolOptions options = test::quiet_options(1);
  options.queue_capacity = 1;
  options.when_queue_full = QueueFullPolicy::block;
  Pool pool(options);
  // The only worker is held by a gated job and the queue holds one job. Killing that worker makes
  // the supervisor thread deliver the held job's outcome in the same loop iteration in which it
  // sees the exit: before any replacement can exist, so the queue is certainly still full.
  test::Gate gate;
  std::promise<std::pair<bool, JobResult>> inner_result;
  pool.submit("wait_fifo", gate.payload(), SubmitOptions{}, [&](JobResult) {
    JobFuture inner = pool.submit("echo", bytes("inner"));  // blocking here would wedge the pool
    bool ready_at_once = inner.wait_for(0s) == std::future_status::ready;
    inner_result.set_value({ready_at_once, inner.get()});
  });
  REQUIRE(test::eventually([&] { return pool.stats().in_flight == 1; }));
  JobFuture queued = pool.submit("echo", bytes("fills the queue"));
  int pid = pool.stats().workers.at(0).pid;
  REQUIRE(::kill(pid, SIGKILL) == 0);
  auto [ready_at_once, inner] = inner_result.get_future().get();
  CHECK(ready_at_once);
  REQUIRE_FALSE(inner.ok());
  CHECK(inner.error().kind == ErrorKind::queue_full);
  CHECK(text(queued.get().value()) == "fills the queue");
}

TEST_CASE("misuse: an event callback and a log sink that throw are contained") {
  std::atomic<int> events{0};
  PoolOptions options = test::quiet_options(1);
  options.on_event = [&](const PoolEvent&) {
    events.fetch_add(1);
    throw std::runtime_error("event callback bug");
  };
  options.log = [](LogLevel, std::string_view) { throw std::runtime_error("log sink bug"); };
  Pool pool(options);
  CHECK(pool.submit("sigkill", Bytes{}).get().error().kind == ErrorKind::worker_crashed);
  CHECK(text(pool.submit("echo", bytes("on")).get().value()) == "on");
  CHECK(events > 0);
  CHECK(pool.stats().health == PoolHealth::healthy);
}

TEST_CASE("misuse: bad requests through the callback form are answered on the calling thread") {
  PoolOptions options = test::quiet_options(1);
  options.max_payload_bytes = 16;
  Pool pool(options);
  for (auto [name, size, kind] : {std::tuple{"", 1, ErrorKind::invalid_request},
                                  std::tuple{"echo", 17, ErrorKind::payload_too_large}}) {
    Delivered delivered;
    pool.submit(name, Bytes(static_cast<std::size_t>(size)), SubmitOptions{}, delivered.callback());
    REQUIRE(delivered.calls == 1);
    CHECK(delivered.results[0].error().kind == kind);
    CHECK_FALSE(delivered.results[0].error().message.empty());
  }
  // An empty callback: the job runs and its outcome is dropped (docs/error-model.md).
  pool.submit("echo", bytes("x"), SubmitOptions{}, Completion{});
  CHECK(test::eventually([&] { return idle(pool) && pool.stats().succeeded == 1; }));
}

TEST_CASE(
    "misuse: a worker started with arguments of another procpool version says so and exits 3") {
  // What a worker executable built from another version sees: --procpool-worker followed by what
  // it cannot read (version 1 passed a segment name where the protocol version now is).
  for (const char* args :
       {"--procpool-worker procpool-1-deadbeef 1", "--procpool-worker 1 1", "--procpool-worker"}) {
    INFO(args);
    std::string command = test::test_worker_path() + " " + args + " 2>&1; echo \"exit $?\"";
    FILE* pipe = ::popen(command.c_str(), "r");
    REQUIRE(pipe != nullptr);
    std::string out;
    char buffer[256];
    while (std::size_t n = std::fread(buffer, 1, sizeof buffer, pipe))
      out.append(buffer, n);
    ::pclose(pipe);
    // The protocol version it names changes with the wire format (channel/layout.hpp).
    CHECK(out.find("unreadable --procpool-worker arguments (protocol ") != std::string::npos);
    CHECK(out.find(" expected)") != std::string::npos);
    CHECK(out.find("exit 3") != std::string::npos);
  }
}
