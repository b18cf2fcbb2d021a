// The fault matrix: one test per way a worker can misbehave. Each proves the same four things: the
// job's outcome has the right kind; the pool serves the next job; the worker was replaced (or, for
// a handler error, kept; or, for a worker that crashes at every start, the storm breaker tripped);
// and once the pool is gone nothing is left: no child, no zombie, no stray grandchild, no extra
// descriptor, no /dev/shm entry. Then a mixed run: 8 threads, random faults, recycling on.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <procpool/procpool.hpp>
#include <random>
#include <sstream>
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

int worker_pid(Pool& pool) {
  JobResult r = pool.submit("pid", Bytes{}).get();
  REQUIRE(r.ok());
  return std::stoi(text(r.value()));
}

// The pid of the worker running the (only) job in flight.
int busy_worker_pid(Pool& pool) {
  int pid = 0;
  REQUIRE(test::eventually([&] {
    for (const auto& w : pool.stats().workers) {
      if (w.state == WorkerState::busy) pid = w.pid;
    }
    return pid != 0;
  }));
  return pid;
}

// A one-worker pool: the worker that served the fault is the one that must be replaced.
PoolOptions one_worker() {
  PoolOptions options = test::quiet_options(1);
  options.kill_grace = 100ms;
  return options;
}

// After a fault: a normal job succeeds, on a different worker process than `faulty_pid`, and the
// stats show the replacement with the reason it left.
void check_replaced_and_serving(Pool& pool, int faulty_pid, RecycleReason reason) {
  JobResult echo = pool.submit("echo", bytes("still here")).get();
  REQUIRE(echo.ok());
  CHECK(text(echo.value()) == "still here");
  CHECK(worker_pid(pool) != faulty_pid);
  CHECK_FALSE(test::process_alive(faulty_pid));
  PoolStats stats = pool.stats();
  CHECK(stats.workers_started == 2);
  CHECK(stats.recycles(reason) == 1);
  CHECK(stats.health == PoolHealth::healthy);
  CHECK(stats.tracked_jobs == 0);
}

// What a process had before a pool existed, checked again after it is destroyed.
class Leftovers {
 public:
  Leftovers() : host_(::getpid()), fds_(test::open_fd_count()) {}

  void watch_grandchild(int pid) { grandchildren_.push_back(pid); }

  void check_nothing_left() const {
    CHECK(test::child_pids(host_).empty());
    CHECK(test::zombie_children(host_).empty());
    CHECK(test::shm_entries_for(host_).empty());
    CHECK(test::open_fd_count() == fds_);
    for (int pid : grandchildren_) {
      INFO("grandchild " << pid);
      CHECK(test::eventually([&] { return !test::process_alive(pid); }, 5s));
    }
  }

 private:
  int host_;
  std::size_t fds_;
  std::vector<int> grandchildren_;
};

// The pid a "grandchild_then_die" job named on its worker's stderr.
int grandchild_named_in(const std::string& worker_output) {
  auto at = worker_output.find("grandchild ");
  REQUIRE(at != std::string::npos);
  return std::stoi(worker_output.substr(at + std::string("grandchild ").size()));
}

// One row in which the worker dies or is killed: `submit` starts the faulty job, `kind` is the
// outcome expected, `reason` why the worker left. Returns the error for row-specific checks.
template <class Submit>
JobError run_fatal_row(PoolOptions options, Submit submit, ErrorKind kind, RecycleReason reason) {
  JobError error;
  {
    Pool pool(options);
    int faulty = worker_pid(pool);
    error = error_of(submit(pool).get());
    CHECK(error.kind == kind);
    INFO(error.message);
    check_replaced_and_serving(pool, faulty, reason);
  }
  return error;
}

}  // namespace

TEST_CASE("fault: a handler that throws fails its job as handler_error and the worker is kept") {
  Leftovers leftovers;
  {
    Pool pool(one_worker());
    int pid = worker_pid(pool);
    JobError error = error_of(pool.submit("fail", bytes("boom")).get());
    CHECK(error.kind == ErrorKind::handler_error);
    CHECK(error.message == "handler failed: boom");
    CHECK(pool.submit("echo", bytes("x")).get().ok());
    CHECK(worker_pid(pool) == pid);  // a handler error is the job's, not the worker's
    CHECK(pool.stats().workers_started == 1);
  }
  leftovers.check_nothing_left();
}

TEST_CASE("fault: a segfault is worker_crashed; the worker is replaced") {
  Leftovers leftovers;
  JobError error = run_fatal_row(
      one_worker(), [](Pool& p) { return p.submit("segv", Bytes{}); }, ErrorKind::worker_crashed,
      RecycleReason::crash);
#if !defined(PROCPOOL_TEST_SANITIZED)  // AddressSanitizer turns SIGSEGV into a report and exit(1)
  CHECK(error.signal == SIGSEGV);
#endif
  leftovers.check_nothing_left();
}

TEST_CASE("fault: an abort is worker_crashed with SIGABRT; the worker is replaced") {
  Leftovers leftovers;
  JobError error = run_fatal_row(
      one_worker(), [](Pool& p) { return p.submit("abort", Bytes{}); }, ErrorKind::worker_crashed,
      RecycleReason::crash);
  CHECK(error.signal == SIGABRT);
  leftovers.check_nothing_left();
}

TEST_CASE("fault: _exit(3) mid-job is worker_crashed with exit code 3; the worker is replaced") {
  Leftovers leftovers;
  JobError error = run_fatal_row(
      one_worker(), [](Pool& p) { return p.submit("exit", Bytes{std::byte{3}}); },
      ErrorKind::worker_crashed, RecycleReason::crash);
  CHECK(error.exit_code == 3);
  CHECK_FALSE(error.signal.has_value());
  leftovers.check_nothing_left();
}

TEST_CASE("fault: a job that hangs forever times out; its worker is stopped and replaced") {
  Leftovers leftovers;
  SubmitOptions timeout;
  timeout.timeout = 100ms;
  JobError error = run_fatal_row(
      one_worker(), [&](Pool& p) { return p.submit("hang", Bytes{}, timeout); }, ErrorKind::timeout,
      RecycleReason::job_timeout);
  CHECK(error.signal == SIGTERM);
  leftovers.check_nothing_left();
}

TEST_CASE("fault: a hang that ignores SIGTERM times out and is SIGKILLed after the grace") {
  Leftovers leftovers;
  SubmitOptions timeout;
  timeout.timeout = 100ms;
  JobError error = run_fatal_row(
      one_worker(), [&](Pool& p) { return p.submit("hang_ignoring_term", Bytes{}, timeout); },
      ErrorKind::timeout, RecycleReason::job_timeout);
  CHECK(error.signal == SIGKILL);
  leftovers.check_nothing_left();
}

TEST_CASE("fault: unbounded allocation is killed at the hard limit as memory_limit; replaced") {
  Leftovers leftovers;
  PoolOptions options = one_worker();
  options.recycle.memory_hard_limit = std::uint64_t{256} << 20;
  options.recycle.memory_sample_interval = 10ms;
  std::uint32_t unbounded = 64 * 1024;  // 64 GiB, 8 MiB at a time: only the limit stops it
  JobError error = run_fatal_row(
      options, [&](Pool& p) { return p.submit("balloon_mb", test::encode_value(unbounded)); },
      ErrorKind::memory_limit, RecycleReason::memory_hard_limit);
  CHECK(error.signal == SIGKILL);
  leftovers.check_nothing_left();
}

#if !defined( \
    PROCPOOL_TEST_SANITIZED)  // AddressSanitizer reserves terabytes: RLIMIT_AS cannot apply
TEST_CASE("fault: unbounded allocation under address_space_limit is a handler_error; kept") {
  Leftovers leftovers;
  {
    PoolOptions options = one_worker();
    options.recycle.address_space_limit = std::uint64_t{512} << 20;
    Pool pool(options);
    int pid = worker_pid(pool);
    std::uint32_t too_much = 4096;  // MiB
    JobError error = error_of(pool.submit("alloc_mb", test::encode_value(too_much)).get());
    CHECK(error.kind == ErrorKind::handler_error);  // std::bad_alloc, thrown inside the handler
    CHECK(pool.submit("echo", bytes("x")).get().ok());
    CHECK(worker_pid(pool) == pid);
  }
  leftovers.check_nothing_left();
}
#endif

TEST_CASE("fault: a worker that starts a grandchild and dies takes the grandchild with it") {
  Leftovers leftovers;
  JobError error = run_fatal_row(
      one_worker(), [](Pool& p) { return p.submit("grandchild_then_die", Bytes{}); },
      ErrorKind::worker_crashed, RecycleReason::crash);
  CHECK(error.signal == SIGKILL);
  int grandchild = grandchild_named_in(error.worker_stderr);
  leftovers.watch_grandchild(grandchild);
  leftovers.check_nothing_left();
}

TEST_CASE("fault: grandchildren of live workers die when the pool shuts them down") {
  Leftovers leftovers;
  {
    Pool pool(test::quiet_options(2));
    for (int i = 0; i < 4; ++i) {
      JobResult r = pool.submit("spawn_grandchild", Bytes{}).get();
      REQUIRE(r.ok());
      std::istringstream fields(text(r.value()));
      int worker = 0, grandchild = 0;
      fields >> worker >> grandchild;
      REQUIRE(test::process_alive(grandchild));
      leftovers.watch_grandchild(grandchild);
    }
  }
  leftovers.check_nothing_left();
}

TEST_CASE("fault: random bytes in the response ring are a protocol_violation; replaced") {
  Leftovers leftovers;
  JobError error = run_fatal_row(
      one_worker(), [](Pool& p) { return p.submit("garbage", bytes("random")); },
      ErrorKind::protocol_violation, RecycleReason::protocol_violation);
  CHECK(error.signal == SIGKILL);
  leftovers.check_nothing_left();
}

TEST_CASE("fault: a record length past the segment is a protocol_violation; replaced") {
  Leftovers leftovers;
  JobError error = run_fatal_row(
      one_worker(), [](Pool& p) { return p.submit("garbage", bytes("length")); },
      ErrorKind::protocol_violation, RecycleReason::protocol_violation);
  CHECK(error.signal == SIGKILL);
  leftovers.check_nothing_left();
}

TEST_CASE("fault: a result for the wrong job id is a protocol_violation; replaced") {
  Leftovers leftovers;
  JobError error = run_fatal_row(
      one_worker(), [](Pool& p) { return p.submit("garbage", bytes("job_id")); },
      ErrorKind::protocol_violation, RecycleReason::protocol_violation);
  CHECK(error.message.find("job") != std::string::npos);
  leftovers.check_nothing_left();
}

TEST_CASE("fault: noise over the whole shared segment is a protocol_violation; replaced") {
  Leftovers leftovers;
  run_fatal_row(
      one_worker(), [](Pool& p) { return p.submit("garbage", bytes("whole_segment")); },
      ErrorKind::protocol_violation, RecycleReason::protocol_violation);
  leftovers.check_nothing_left();
}

TEST_CASE("fault: a worker that unmaps its segment crashes; worker_crashed, replaced") {
  Leftovers leftovers;
  run_fatal_row(
      one_worker(), [](Pool& p) { return p.submit("unmap_segment", Bytes{}); },
      ErrorKind::worker_crashed, RecycleReason::crash);
  leftovers.check_nothing_left();
}

TEST_CASE("fault: closing its channel and exiting 0 mid-job is worker_crashed; replaced") {
  Leftovers leftovers;
  JobError error = run_fatal_row(
      one_worker(), [](Pool& p) { return p.submit("close_and_exit", Bytes{}); },
      ErrorKind::worker_crashed, RecycleReason::crash);
  CHECK(error.exit_code == 0);
  leftovers.check_nothing_left();
}

TEST_CASE("fault: a worker SIGKILLed from outside mid-job is worker_crashed; replaced") {
  Leftovers leftovers;
  run_fatal_row(
      one_worker(),
      [](Pool& p) {
        JobFuture future = p.submit("hang", Bytes{});
        REQUIRE(::kill(busy_worker_pid(p), SIGKILL) == 0);
        return future;
      },
      ErrorKind::worker_crashed, RecycleReason::crash);
  leftovers.check_nothing_left();
}

TEST_CASE("fault: an idle worker SIGKILLed from outside is replaced without failing a job") {
  Leftovers leftovers;
  {
    Pool pool(one_worker());
    int pid = worker_pid(pool);
    REQUIRE(::kill(pid, SIGKILL) == 0);
    REQUIRE(test::eventually([&] { return pool.stats().recycles(RecycleReason::crash) == 1; }));
    CHECK(pool.submit("echo", bytes("x")).get().ok());
    CHECK(worker_pid(pool) != pid);
    CHECK(pool.stats().failed == 0);
  }
  leftovers.check_nothing_left();
}

namespace {

// A 60 s job with a 100 ms timeout on a worker SIGSTOPped before it gets the job, or once it runs
// it: the job times out (counted from dispatch either way) and the worker dies of the SIGKILL
// after kill_grace (SIGTERM waits for a SIGCONT that never comes).
void check_stopped_worker_row(bool stop_before_submit) {
  Leftovers leftovers;
  SubmitOptions timeout;
  timeout.timeout = 100ms;
  JobError error = run_fatal_row(
      one_worker(),
      [&](Pool& p) {
        if (stop_before_submit) REQUIRE(::kill(worker_pid(p), SIGSTOP) == 0);
        std::uint32_t ms = 60'000;
        JobFuture future = p.submit("sleep_ms", test::encode_value(ms), timeout);
        if (!stop_before_submit) REQUIRE(::kill(busy_worker_pid(p), SIGSTOP) == 0);
        return future;
      },
      ErrorKind::timeout, RecycleReason::job_timeout);
  CHECK(error.signal == SIGKILL);
  leftovers.check_nothing_left();
}

}  // namespace

TEST_CASE("fault: a worker SIGSTOPped from outside mid-job times out and is SIGKILLed; replaced") {
  check_stopped_worker_row(false);
}

TEST_CASE("fault: a job its SIGSTOPped worker never read times out with it; it is not run again") {
  // Not taken back from the stopped worker to run elsewhere (run_fatal_row: 2 workers started).
  check_stopped_worker_row(true);
}

TEST_CASE(
    "fault: a worker that crashes at every start trips the storm breaker; submit fails fast") {
  Leftovers leftovers;
  {
    PoolOptions options = one_worker();
    options.worker_command = {test::test_worker_path(), "--crash-at-start"};
    options.restart_storm_threshold = 3;
    options.restart_backoff_initial = 1ms;
    options.restart_backoff_max = 20ms;
    Pool pool(options);
    JobError queued = error_of(pool.submit("echo", bytes("x")).get());
    CHECK(queued.kind == ErrorKind::pool_degraded);
    CHECK(queued.message.find("before it was ready") != std::string::npos);
    JobFuture fast = pool.submit("echo", bytes("y"));
    REQUIRE(fast.wait_for(0s) == std::future_status::ready);
    CHECK(error_of(fast.get()).kind == ErrorKind::pool_degraded);
    PoolStats stats = pool.stats();
    CHECK(stats.health == PoolHealth::degraded);
    CHECK(stats.start_failures >= 3);
    CHECK(stats.recycles(RecycleReason::start_failure) >= 3);
  }
  leftovers.check_nothing_left();
}

// ---- The mixed run --------------------------------------------------------------------------

namespace {

// The faults the mixed run draws, each with the outcome it must produce.
struct Fault {
  const char* job;
  const char* payload;
  bool short_timeout;
  ErrorKind kind;
};

const Fault faults[] = {
    {"fail", "x", false, ErrorKind::handler_error},
    {"throw_int", "", false, ErrorKind::handler_error},
    {"no-such-job", "", false, ErrorKind::unknown_job},
    {"sigkill", "", false, ErrorKind::worker_crashed},
    {"abort", "", false, ErrorKind::worker_crashed},
    {"exit", "\x03", false, ErrorKind::worker_crashed},
    {"grandchild_then_die", "", false, ErrorKind::worker_crashed},
    {"close_and_exit", "", false, ErrorKind::worker_crashed},
    {"garbage", "random", false, ErrorKind::protocol_violation},
    {"garbage", "job_id", false, ErrorKind::protocol_violation},
    {"hang", "", true, ErrorKind::timeout},
};
constexpr std::size_t fault_count = sizeof(faults) / sizeof(faults[0]);

struct Tally {
  std::uint64_t ok = 0;
  std::array<std::uint64_t, error_kind_count> by_kind{};
  std::uint64_t wrong = 0;  // an outcome other than the one the job must produce

  void add(const Tally& other) {
    ok += other.ok;
    wrong += other.wrong;
    for (std::size_t k = 0; k < by_kind.size(); ++k)
      by_kind[k] += other.by_kind[k];
  }
};

std::optional<ErrorKind> expected_kind(int fault) {
  if (fault < 0) return std::nullopt;
  return faults[fault].kind;
}

void record(Tally& tally, const JobResult& result, std::optional<ErrorKind> expected,
            const std::string& echo) {
  if (result.ok()) {
    ++tally.ok;
    if (expected || text(result.value()) != echo) ++tally.wrong;
    return;
  }
  ++tally.by_kind[static_cast<std::size_t>(result.error().kind)];
  if (expected != result.error().kind) ++tally.wrong;
}

}  // namespace

TEST_CASE("mixed run: 8 threads, 5% random faults, recycling: every job resolves exactly once") {
#if defined(PROCPOOL_TEST_SANITIZED)
  // Under AddressSanitizer every replacement worker is a sanitized binary starting up (tens of ms
  // of shadow-memory set-up each); a fifth of the jobs keeps the binary within its time budget.
  constexpr int total = 20'000;
#else
  constexpr int total = 100'000;
#endif
  constexpr int threads = 8;
  constexpr int per_thread = total / threads;
  constexpr int batch = 250;  // outstanding jobs per thread: bounded memory
  Leftovers leftovers;

  // Shared with the callbacks, which run on the supervisor thread: declared before the pool so
  // that they outlive it.
  std::vector<std::atomic<std::uint8_t>> calls(total);  // outcomes delivered, per job
  std::array<Tally, threads> tallies{};
  std::array<std::mutex, threads> tally_mutexes;
  std::array<std::atomic<int>, threads> pending{};  // callbacks not yet called, per thread
  {
    PoolOptions options = test::quiet_options(4);
    options.kill_grace = 100ms;
    options.recycle.max_jobs = 400;
    options.recycle.max_jobs_jitter = 100;
    // Faults here are spread among successes; the breaker has its own row above, and a backoff
    // after each crash would only slow the run down.
    options.restart_storm_threshold = 1000;
    options.restart_backoff_initial = 1ms;
    options.restart_backoff_max = 5ms;
    Pool pool(options);

    // Warm-up (allocator pools, lazy initialisation, the first replacements), then the baseline.
    for (const char* job : {"sigkill", "fail", "no-such-job"})
      CHECK_FALSE(pool.submit(job, Bytes{}).get().ok());
    for (int i = 0; i < 2000; ++i)
      CHECK(pool.submit("echo", bytes("warm")).get().ok());
    REQUIRE(test::settled(pool, 4));
    const std::size_t fds_warm = test::open_fd_count();
    const std::uint64_t rss_warm = test::self_rss_bytes();
    const std::uint64_t warm_up_jobs = pool.stats().submitted;

    auto run_thread = [&](int t) {
      std::mt19937 random(20261129u + static_cast<unsigned>(t));
      std::uniform_int_distribution<int> percent(0, 99);
      std::uniform_int_distribution<int> which(0, static_cast<int>(fault_count) - 1);
      SubmitOptions short_timeout;
      short_timeout.timeout = 50ms;
      const bool callbacks = t % 2 == 1;  // half the threads use futures, half callbacks
      const auto slot = static_cast<std::size_t>(t);
      for (int start = 0; start < per_thread; start += batch) {
        std::vector<std::tuple<int, int, JobFuture>> futures;
        for (int j = start; j < start + batch && j < per_thread; ++j) {
          const int index = t * per_thread + j;
          const int fault = percent(random) < 5 ? which(random) : -1;
          std::string job = fault < 0 ? "echo" : faults[fault].job;
          Bytes payload = bytes(fault < 0 ? std::to_string(index) : faults[fault].payload);
          SubmitOptions submit_options =
              fault >= 0 && faults[fault].short_timeout ? short_timeout : SubmitOptions{};
          if (!callbacks) {
            futures.emplace_back(index, fault,
                                 pool.submit(job, std::move(payload), submit_options));
            continue;
          }
          pending[slot].fetch_add(1);
          pool.submit(job, std::move(payload), submit_options,
                      [&, slot, index, fault](JobResult r) {
                        calls[static_cast<std::size_t>(index)].fetch_add(1);
                        {
                          std::lock_guard lock(tally_mutexes[slot]);
                          record(tallies[slot], r, expected_kind(fault), std::to_string(index));
                        }
                        pending[slot].fetch_sub(1);
                        pending[slot].notify_all();
                      });
        }
        for (auto& [index, fault, future] : futures) {
          JobResult r = future.get();
          calls[static_cast<std::size_t>(index)].fetch_add(1);
          std::lock_guard lock(tally_mutexes[slot]);
          record(tallies[slot], r, expected_kind(fault), std::to_string(index));
        }
        for (int left = pending[slot].load(); left != 0; left = pending[slot].load())
          pending[slot].wait(left);
      }
    };
    std::vector<std::thread> submitters;
    for (int t = 0; t < threads; ++t)
      submitters.emplace_back(run_thread, t);
    for (auto& s : submitters)
      s.join();

    // Every future and every callback resolved, none twice.
    std::size_t never = 0, twice = 0;
    for (auto& c : calls) {
      never += c.load() == 0;
      twice += c.load() > 1;
    }
    CHECK(never == 0);
    CHECK(twice == 0);

    // Each outcome is the one its job must produce, and the counts by kind add up.
    Tally sum;
    for (std::size_t t = 0; t < tallies.size(); ++t) {
      std::lock_guard lock(tally_mutexes[t]);
      sum.add(tallies[t]);
    }
    CHECK(sum.wrong == 0);
    std::uint64_t failed = 0;
    for (auto n : sum.by_kind)
      failed += n;
    CHECK(sum.ok + failed == static_cast<std::uint64_t>(total));
    INFO("faults: " << failed << " of " << total);
    CHECK(failed > total / 40);  // the draw is seeded: about 5%
    CHECK(failed < total / 10);

    PoolStats stats = pool.stats();
    CHECK(stats.submitted == warm_up_jobs + static_cast<std::uint64_t>(total));
    CHECK(stats.succeeded == sum.ok + 2000);
    CHECK(stats.failed == failed + 3);  // the warm-up's sigkill, fail and no-such-job
    for (std::size_t k = 0; k < error_kind_count; ++k) {
      auto kind = static_cast<ErrorKind>(k);
      INFO("kind " << to_string(kind));
      std::uint64_t warm = kind == ErrorKind::worker_crashed || kind == ErrorKind::handler_error ||
                           kind == ErrorKind::unknown_job;
      CHECK(stats.failed_by_kind[k] == sum.by_kind[k] + warm);
    }
    CHECK(stats.tracked_jobs == 0);
    CHECK(stats.recycles(RecycleReason::max_jobs) > 0);
    CHECK(stats.recycles(RecycleReason::crash) > 0);
    CHECK(stats.recycles(RecycleReason::protocol_violation) > 0);
    CHECK(stats.recycles(RecycleReason::job_timeout) > 0);
    CHECK(stats.health == PoolHealth::healthy);

    // Host resources flat: once the pool settles again at its four idle workers, the descriptor
    // count is what it was after the warm-up, and RSS has not grown with the jobs.
    REQUIRE(test::settled(pool, 4));
    CHECK(test::open_fd_count() == fds_warm);
#if !defined(PROCPOOL_TEST_SANITIZED)  // AddressSanitizer quarantines freed memory: RSS grows
    const std::uint64_t rss_end = test::self_rss_bytes();
    INFO("host RSS after warm-up " << rss_warm / 1024 << " KiB, at the end " << rss_end / 1024
                                   << " KiB");
    CHECK(rss_end <= rss_warm + (std::uint64_t{8} << 20));
#else
    (void)rss_warm;
#endif
  }
  leftovers.check_nothing_left();
}
