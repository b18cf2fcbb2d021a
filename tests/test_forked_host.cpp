// A host that forks after making its pool (a prefork server, a daemon that forks to detach) gives
// the child a copy of the Pool without the supervisor thread, and with whatever lock that thread
// held at the fork held for good. In the copy every entry point answers at once: jobs fail with
// invalid_request naming both pids, lend() throws, stats() says stopped, cancel() finds nothing,
// shutdown() and ~Pool leave the host's pool, its workers and its fork server alone.
//
// The child is a fork of this test process: it reports line by line through a pipe and _exits
// without running Catch2's teardown. The parent reads it with a deadline and kills it if it hangs,
// so a hang fails the test instead of stalling the suite.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <procpool/procpool.hpp>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "catch.hpp"
#include "test_support.hpp"

using namespace procpool;
using namespace std::chrono_literals;
using test::bytes;

namespace {

// The child's side: every line goes to the parent at once, so a child that hangs shows how far it
// got.
class Reporter {
 public:
  explicit Reporter(int fd) : fd_(fd) {}

  void line(const std::string& text) {
    std::string out = text + "\n";
    std::size_t done = 0;
    while (done < out.size()) {
      ssize_t n = ::write(fd_, out.data() + done, out.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;
      done += static_cast<std::size_t>(n);
    }
  }
  void check(bool ok, const std::string& what) {
    line((ok ? "ok " : "FAIL ") + what);
    failed_ |= !ok;
  }
  bool failed() const { return failed_; }

 private:
  int fd_;
  bool failed_ = false;
};

// What a forked child reported, and how it ended.
struct ChildRun {
  std::string lines;
  bool hung = false;  // still running at the deadline, so killed
  int status = 0;     // from waitpid
  bool passed() const { return !hung && WIFEXITED(status) && WEXITSTATUS(status) == 0; }
};

// Forks. The child runs `body` and _exits, 0 if every check passed. The parent collects the
// child's lines until it exits, for at most `deadline`.
ChildRun run_in_fork(const std::function<void(Reporter&)>& body,
                     std::chrono::milliseconds deadline = 20s) {
  int fds[2];
  REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    ::close(fds[0]);
    Reporter report(fds[1]);
    try {
      body(report);
    } catch (const std::exception& e) {
      report.check(false, std::string("the child threw: ") + e.what());
    } catch (...) {
      report.check(false, "the child threw a non-std::exception");
    }
    ::_exit(report.failed() ? 1 : 0);
  }
  ::close(fds[1]);
  ChildRun run;
  const auto until = std::chrono::steady_clock::now() + deadline;
  char buffer[4096];
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        until - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      run.hung = true;
      break;
    }
    pollfd readable{fds[0], POLLIN, 0};
    int ready = ::poll(&readable, 1, static_cast<int>(left.count()) + 1);
    if (ready <= 0) continue;  // EINTR, or the deadline: checked above
    ssize_t n = ::read(fds[0], buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // the child exited
    run.lines.append(buffer, static_cast<std::size_t>(n));
  }
  ::close(fds[0]);
  if (run.hung) ::kill(child, SIGKILL);
  while (::waitpid(child, &run.status, 0) < 0 && errno == EINTR) {
  }
  return run;
}

// What the parent knows before the fork, for the checks in the child.
struct BeforeFork {
  int host_pid = 0;
  LentBuffer input, output;     // lent by the host's pool
  std::optional<JobId> queued;  // a job the host has queued
};

// Calls every entry point of the copy `pool` (in a forked child) and checks that each answers at
// once: jobs with invalid_request naming both pids, ready before submit returns. Then destroys
// the copy.
void check_copy(Reporter& report, std::unique_ptr<Pool>& pool, const BeforeFork& before) {
  const std::string child_pid = "(pid " + std::to_string(::getpid()) + ")";
  const std::string host_pid = "(pid " + std::to_string(before.host_pid) + ")";
  auto names_both = [&](const std::string& message) {
    return message.find(child_pid) != std::string::npos &&
           message.find(host_pid) != std::string::npos;
  };
  auto refused = [&](const auto& result, const std::string& what) {
    if (result.ok()) return report.check(false, what + ": succeeded");
    const JobError& e = result.error();
    report.check(e.kind == ErrorKind::invalid_request && names_both(e.message) && e.attempts == 0,
                 what + ": " + std::string(to_string(e.kind)) + ": " + e.message);
  };
  auto ready_and_refused = [&](auto future, const std::string& what) {
    if (future.wait_for(0s) != std::future_status::ready) {
      return report.check(false, what + ": not ready when submit returned");
    }
    refused(future.get(), what);
  };
  report.line("forked");

  ready_and_refused(pool->submit("echo", bytes("copy")), "submit (future)");
  {
    std::optional<JobResult> got;
    pool->submit("echo", bytes("copy"), {}, [&](JobResult r) { got = std::move(r); });
    if (!got) {
      report.check(false, "submit (callback): not called before submit returned");
    } else {
      refused(*got, "submit (callback)");
    }
  }
  ready_and_refused(pool->submit<test::EchoText>("copy"), "typed submit");
  refused(pool->call("echo", bytes("copy")), "call");
  refused(pool->call<test::EchoText>("copy"), "typed call");
  {
    std::vector<Bytes> payloads{bytes("a"), bytes("b"), bytes("c")};
    std::vector<JobFuture> futures = pool->submit_batch("echo", payloads);
    report.check(futures.size() == 3, "submit_batch (futures): one future per payload");
    for (std::size_t i = 0; i < futures.size(); ++i) {
      ready_and_refused(std::move(futures[i]), "submit_batch (futures) #" + std::to_string(i));
    }
    std::vector<std::optional<JobResult>> got(payloads.size());
    pool->submit_batch("echo", payloads, {},
                       [&](std::size_t i, JobResult r) { got.at(i) = std::move(r); });
    for (std::size_t i = 0; i < got.size(); ++i) {
      const std::string what = "submit_batch (callback) #" + std::to_string(i);
      if (!got[i]) {
        report.check(false, what + ": not called before submit_batch returned");
      } else {
        refused(*got[i], what);
      }
    }
  }
  ready_and_refused(pool->submit_in_place("in_place_copy", before.input, before.output),
                    "submit_in_place");
  refused(pool->call_in_place("in_place_copy", before.input, before.output), "call_in_place");
  try {
    (void)pool->lend(64);
    report.check(false, "lend: lent a buffer");
  } catch (const std::logic_error& e) {
    report.check(names_both(e.what()), std::string("lend: threw ") + e.what());
  }
  if (before.queued) {
    report.check(!pool->cancel(*before.queued), "cancel of the host's queued job: false");
  }
  report.check(!pool->cancel(1), "cancel of an unknown job: false");
  PoolStats stats = pool->stats();
  report.check(stats.health == PoolHealth::stopped && stats.workers.empty() && stats.queued == 0 &&
                   stats.in_flight == 0 && stats.tracked_jobs == 0,
               "stats: stopped, no workers, no jobs");
  pool->shutdown(1s);
  report.line("shutdown returned");
  // Still the fork's answer: the copy did not become a pool shutting down.
  ready_and_refused(pool->submit("echo", bytes("copy")), "submit after shutdown");
  pool.reset();
  report.line("the copy is destroyed");
}

// The host's side after the child is done: the pool serves, with the same workers (and fork
// server) as before the fork, none of which exited.
void check_host_unharmed(Pool& pool, const std::set<int>& workers, std::optional<int> server) {
  JobResult r = pool.submit("echo", bytes("after the fork")).get();
  INFO((r.ok() ? std::string() : r.error().message));
  REQUIRE(r.ok());
  CHECK(test::text(r.value()) == "after the fork");
  CHECK(pool.call("echo", bytes("called")).ok());
  PoolStats stats = pool.stats();
  std::set<int> now;
  for (const WorkerStats& w : stats.workers)
    now.insert(w.pid);
  CHECK(now == workers);
  for (int pid : workers) {
    INFO("worker pid " << pid);
    CHECK(test::process_alive(pid));
  }
  CHECK(stats.workers_exited == 0);
  CHECK(stats.failures(ErrorKind::protocol_violation) == 0);
  CHECK(stats.health == PoolHealth::healthy);
  if (server) {
    CHECK(test::process_alive(*server));
    CHECK(test::fork_servers(::getpid()) == std::vector<int>{*server});
  }
}

std::set<int> worker_pids(Pool& pool) {
  std::set<int> pids;
  for (const WorkerStats& w : pool.stats().workers)
    pids.insert(w.pid);
  return pids;
}

}  // namespace

TEST_CASE("forked host: every entry point of the copy answers at once, the host's pool serves on") {
  const StartMode mode = GENERATE(StartMode::exec, StartMode::fork_server);
  INFO((mode == StartMode::exec ? "StartMode::exec" : "StartMode::fork_server"));
  PoolOptions options = test::quiet_options(2);
  options.start_mode = mode;
  auto pool = std::make_unique<Pool>(options);
  REQUIRE(pool->call("echo", bytes("before")).ok());
  REQUIRE(test::settled(*pool, 2));
  const std::set<int> workers = worker_pids(*pool);
  std::optional<int> server;
  if (mode == StartMode::fork_server) {
    std::vector<int> servers = test::fork_servers(::getpid());
    REQUIRE(servers.size() == 1);
    server = servers[0];
  }
  BeforeFork before{::getpid(), pool->lend(64), pool->lend(64), std::nullopt};

  ChildRun child = run_in_fork([&](Reporter& report) { check_copy(report, pool, before); });
  INFO("the child reported:\n" << child.lines);
  CHECK_FALSE(child.hung);
  CHECK(child.passed());
  CHECK(child.lines.find("the copy is destroyed") != std::string::npos);
  check_host_unharmed(*pool, workers, server);
}

TEST_CASE("forked host: a fork made while the supervisor thread holds the pool's locks") {
  // The event callback runs on the supervisor thread with the pool's state lock held: a fork made
  // while it waits here copies that lock held, with no thread left in the child to release it.
  struct Held {
    std::mutex mutex;
    std::condition_variable changed;
    bool inside = false, released = false;
  } held;
  PoolOptions options = test::quiet_options(1);
  options.on_event = [&](const PoolEvent& event) {
    if (event.type != EventType::job_failed) return;
    std::unique_lock lock(held.mutex);
    held.inside = true;
    held.changed.notify_all();
    held.changed.wait(lock, [&] { return held.released; });
  };
  auto pool = std::make_unique<Pool>(options);
  REQUIRE(test::settled(*pool, 1));
  const std::set<int> workers = worker_pids(*pool);
  BeforeFork before{::getpid(), pool->lend(64), pool->lend(64), std::nullopt};
  JobFuture failing = pool->submit("fail", bytes("held"));
  {
    std::unique_lock lock(held.mutex);
    REQUIRE(held.changed.wait_for(lock, 10s, [&] { return held.inside; }));
  }

  ChildRun child = run_in_fork([&](Reporter& report) { check_copy(report, pool, before); });
  {
    std::lock_guard lock(held.mutex);
    held.released = true;
  }
  held.changed.notify_all();
  INFO("the child reported:\n" << child.lines);
  CHECK_FALSE(child.hung);
  CHECK(child.passed());
  JobResult failed = failing.get();
  REQUIRE_FALSE(failed.ok());
  CHECK(failed.error().kind == ErrorKind::handler_error);
  check_host_unharmed(*pool, workers, std::nullopt);
}

TEST_CASE(
    "forked host: QueueFullPolicy::block with a full queue refuses in the copy, never waits") {
  PoolOptions options = test::quiet_options(1);
  options.queue_capacity = 1;
  options.when_queue_full = QueueFullPolicy::block;
  auto pool = std::make_unique<Pool>(options);
  REQUIRE(test::settled(*pool, 1));
  const std::set<int> workers = worker_pids(*pool);
  test::Gate gate;
  JobFuture running = pool->submit("wait_fifo", gate.payload());
  REQUIRE(test::eventually([&] { return pool->stats().in_flight == 1; }));
  JobFuture queued = pool->submit("echo", bytes("queued"));
  REQUIRE(pool->stats().queued == 1);  // the queue is full: a submit here would wait for room
  BeforeFork before{::getpid(), pool->lend(64), pool->lend(64), queued.id()};

  ChildRun child = run_in_fork([&](Reporter& report) { check_copy(report, pool, before); });
  INFO("the child reported:\n" << child.lines);
  CHECK_FALSE(child.hung);
  CHECK(child.passed());
  gate.release();
  CHECK(running.get().ok());
  JobResult r = queued.get();  // not cancelled by the copy
  INFO((r.ok() ? std::string() : r.error().message));
  CHECK(r.ok());
  check_host_unharmed(*pool, workers, std::nullopt);
}

TEST_CASE("forked host: destroying the copy at once leaves the host's workers and fork server") {
  const StartMode mode = GENERATE(StartMode::exec, StartMode::fork_server);
  INFO((mode == StartMode::exec ? "StartMode::exec" : "StartMode::fork_server"));
  PoolOptions options = test::quiet_options(2);
  options.start_mode = mode;
  auto pool = std::make_unique<Pool>(options);
  REQUIRE(pool->call("echo", bytes("before")).ok());
  REQUIRE(test::settled(*pool, 2));
  const std::set<int> workers = worker_pids(*pool);
  std::optional<int> server;
  if (mode == StartMode::fork_server) {
    std::vector<int> servers = test::fork_servers(::getpid());
    REQUIRE(servers.size() == 1);
    server = servers[0];
  }

  // What a daemon's child that never uses the pool does: let its copy go out of scope.
  ChildRun child = run_in_fork([&](Reporter& report) {
    pool.reset();
    report.line("the copy is destroyed");
  });
  INFO("the child reported:\n" << child.lines);
  CHECK_FALSE(child.hung);
  CHECK(child.passed());
  CHECK(child.lines.find("the copy is destroyed") != std::string::npos);
  check_host_unharmed(*pool, workers, server);
}

TEST_CASE("forked host: a pool made in the child after the fork serves there") {
#ifdef PROCPOOL_TEST_TSAN
  PROCPOOL_SKIP("the thread sanitizer ends a child of a multi-threaded fork that starts a thread");
#endif
  auto pool = std::make_unique<Pool>(test::quiet_options(1));
  REQUIRE(pool->call("echo", bytes("before")).ok());
  const std::set<int> workers = worker_pids(*pool);

  // What the error message asks for: the copy is refused, a pool of the child's own serves.
  ChildRun child = run_in_fork([&](Reporter& report) {
    report.check(!pool->submit("echo", bytes("copy")).get().ok(), "the copy refuses");
    Pool own(test::quiet_options(1));
    JobResult submitted = own.submit("echo", bytes("own")).get();
    report.check(submitted.ok() && test::text(submitted.value()) == "own",
                 "the child's pool runs a submitted job");
    JobResult called = own.call("echo", bytes("own"));
    report.check(called.ok() && test::text(called.value()) == "own",
                 "the child's pool runs a called job");
    PoolStats stats = own.stats();
    report.check(stats.health == PoolHealth::healthy && stats.workers.size() == 1 &&
                     workers.count(stats.workers[0].pid) == 0,
                 "the child's pool has a worker of its own");
    own.shutdown();
    report.line("the child's pool shut down");
  });
  INFO("the child reported:\n" << child.lines);
  CHECK_FALSE(child.hung);
  CHECK(child.passed());
  CHECK(child.lines.find("the child's pool shut down") != std::string::npos);
  check_host_unharmed(*pool, workers, std::nullopt);
}
