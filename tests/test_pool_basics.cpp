// A pool runs jobs in worker processes, self-exec'd or from a separate executable, through the
// future, callback and typed APIs; the channel hand-off leaves the worker only what it needs.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <procpool/procpool.hpp>
#include <set>

#include "catch.hpp"
#include "test_support.hpp"

using namespace procpool;
using test::bytes;
using test::text;

namespace {

struct Doubler {
  static constexpr std::string_view name = "double";
  using Request = std::int64_t;
  using Response = std::int64_t;
};

struct EchoAsInt {
  static constexpr std::string_view name = "echo";
  using Request = std::string;
  using Response = std::int64_t;
};

}  // namespace

TEST_CASE("a self-exec pool runs a job in another process and returns its bytes") {
  Pool pool(test::quiet_options(2));
  JobResult result = pool.submit("echo", bytes("hello")).get();
  REQUIRE(result.ok());
  CHECK(text(result.value()) == "hello");

  JobResult pid = pool.submit("pid", Bytes{}).get();
  REQUIRE(pid.ok());
  CHECK(std::stoi(text(pid.value())) != ::getpid());
}

TEST_CASE("a separate worker executable runs jobs the same way") {
  PoolOptions options = test::quiet_options(1);
  options.worker_command = {test::test_worker_path()};
  Pool pool(options);
  JobResult result = pool.submit("echo", bytes("from a dedicated worker")).get();
  REQUIRE(result.ok());
  CHECK(text(result.value()) == "from a dedicated worker");
  auto stats = pool.stats();
  REQUIRE(stats.workers.size() == 1);
  std::string cmdline_path = "/proc/" + std::to_string(stats.workers[0].pid) + "/exe";
  CHECK(std::filesystem::read_symlink(cmdline_path) ==
        std::filesystem::path(test::test_worker_path()));
}

TEST_CASE("an empty payload and an empty result travel fine") {
  Pool pool(test::quiet_options(1));
  JobResult result = pool.submit("echo", Bytes{}).get();
  REQUIRE(result.ok());
  CHECK(result.value().empty());
}

TEST_CASE("the callback API delivers exactly one outcome per job") {
  Pool pool(test::quiet_options(2));
  std::promise<JobResult> ok_promise, failed_promise;
  pool.submit("echo", bytes("cb"), SubmitOptions{},
              [&](JobResult r) { ok_promise.set_value(std::move(r)); });
  pool.submit("fail", bytes("x"), SubmitOptions{},
              [&](JobResult r) { failed_promise.set_value(std::move(r)); });
  JobResult ok = ok_promise.get_future().get();
  JobResult failed = failed_promise.get_future().get();
  REQUIRE(ok.ok());
  CHECK(text(ok.value()) == "cb");
  REQUIRE_FALSE(failed.ok());
  CHECK(failed.error().kind == ErrorKind::handler_error);
}

TEST_CASE("typed jobs encode the request and decode the response") {
  Pool pool(test::quiet_options(1));
  Future<std::string> echoed = pool.submit<test::EchoText>(std::string("typed"));
  CHECK(echoed.id() > 0);
  Result<std::string> result = echoed.get();
  REQUIRE(result.ok());
  CHECK(result.value() == "typed");

  // A response that does not decode is a codec_error, not an exception.
  Result<std::int64_t> mismatched = pool.submit<EchoAsInt>(std::string("abc")).get();
  REQUIRE_FALSE(mismatched.ok());
  CHECK(mismatched.error().kind == ErrorKind::codec_error);
}

TEST_CASE("typed handlers registered with add<Job> run in the worker") {
  // The test registry has no "double" job: a typed submit of an unregistered job is unknown_job.
  Pool pool(test::quiet_options(1));
  Result<std::int64_t> result = pool.submit<Doubler>(21).get();
  REQUIRE_FALSE(result.ok());
  CHECK(result.error().kind == ErrorKind::unknown_job);

  // A registry built with add<Job> encodes and decodes through the codec.
  JobRegistry jobs;
  jobs.add<Doubler>([](JobContext&, const std::int64_t& x) { return 2 * x; });
  const JobHandler* handler = jobs.find("double");
  REQUIRE(handler != nullptr);
  JobContext context("double", 1, 1, 0, std::nullopt);
  Bytes out = (*handler)(context, Codec<std::int64_t>::encode(21));
  CHECK(Codec<std::int64_t>::decode(out) == 42);
  CHECK_THROWS_AS((*handler)(context, bytes("not eight bytes")), CodecError);
}

TEST_CASE("a job sees its name, attempt, worker history and deadline") {
  Pool pool(test::quiet_options(1));
  SubmitOptions with_timeout;
  with_timeout.timeout = std::chrono::seconds(30);
  CHECK(text(pool.submit("context", Bytes{}).get().value()) ==
        "context attempt=1 done=0 deadline=no");
  CHECK(text(pool.submit("context", Bytes{}, with_timeout).get().value()) ==
        "context attempt=1 done=1 deadline=yes");
}

TEST_CASE(
    "a worker holds only stdin, stdout/stderr, its doorbell (3) and its descriptor channel (5); "
    "the segment is mapped, not open") {
  Pool pool(test::quiet_options(1));
  JobResult fds = pool.submit("open_fds", Bytes{}).get();
  REQUIRE(fds.ok());
  CHECK(text(fds.value()) == "0 1 2 3 5 ");
}

TEST_CASE(
    "a worker's shared memory never appears in /dev/shm, and the host holds no descriptor of it") {
  Pool pool(test::quiet_options(2));
  REQUIRE(pool.submit("echo", bytes("x")).get().ok());
  REQUIRE(test::eventually([&] {
    auto stats = pool.stats();
    return stats.workers.size() == 2 && stats.workers[0].state == WorkerState::idle &&
           stats.workers[1].state == WorkerState::idle;
  }));
  CHECK(test::shm_entries_for(::getpid()).empty());
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    std::string target = std::filesystem::read_symlink(entry.path(), ec).string();
    CHECK(target.find("memfd:") == std::string::npos);
  }
}

TEST_CASE("stats count submitted, succeeded and failed jobs by kind") {
  Pool pool(test::quiet_options(2));
  REQUIRE(pool.submit("echo", bytes("a")).get().ok());
  REQUIRE_FALSE(pool.submit("fail", bytes("b")).get().ok());
  REQUIRE_FALSE(pool.submit("nope", bytes("c")).get().ok());
  REQUIRE(test::eventually([&] {
    auto s = pool.stats();
    return s.workers.size() == 2 && s.workers[0].state == WorkerState::idle &&
           s.workers[1].state == WorkerState::idle;
  }));
  PoolStats stats = pool.stats();
  CHECK(stats.submitted == 3);
  CHECK(stats.succeeded == 1);
  CHECK(stats.failed == 2);
  CHECK(stats.failures(ErrorKind::handler_error) == 1);
  CHECK(stats.failures(ErrorKind::unknown_job) == 1);
  CHECK(stats.health == PoolHealth::healthy);
  CHECK(stats.tracked_jobs == 0);
  std::uint64_t jobs_done = 0;
  for (const auto& w : stats.workers) {
    jobs_done += w.jobs_done;
    CHECK(w.pid > 0);
    CHECK(w.rss_bytes > 0);
    CHECK(w.peak_rss_bytes >= w.rss_bytes);
  }
  CHECK(jobs_done == 3);
}

TEST_CASE("submit_batch runs every job and futures[i] holds payloads[i]'s outcome") {
  Pool pool(test::quiet_options(2));
  std::vector<Bytes> payloads;
  for (int i = 0; i < 200; ++i)
    payloads.push_back(bytes("job " + std::to_string(i)));
  std::vector<JobFuture> futures = pool.submit_batch("echo", payloads);
  REQUIRE(futures.size() == 200);
  for (std::size_t i = 0; i < futures.size(); ++i) {
    if (i > 0) CHECK(futures[i].id() == futures[0].id() + i);
    JobResult result = futures[i].get();
    REQUIRE(result.ok());
    CHECK(text(result.value()) == "job " + std::to_string(i));
  }
  CHECK(pool.submit_batch("echo", {}).empty());
}

TEST_CASE("submit_batch rejects only the jobs that cannot be queued") {
  PoolOptions options = test::quiet_options(1);
  options.max_payload_bytes = 16;
  Pool pool(options);
  std::vector<Bytes> payloads{bytes("small"), Bytes(17), bytes("also small")};
  std::vector<JobFuture> futures = pool.submit_batch("echo", payloads);
  CHECK(text(futures[0].get().value()) == "small");
  JobResult too_large = futures[1].get();
  REQUIRE_FALSE(too_large.ok());
  CHECK(too_large.error().kind == ErrorKind::payload_too_large);
  CHECK(text(futures[2].get().value()) == "also small");

  std::vector<JobFuture> unnamed = pool.submit_batch("", std::vector<Bytes>(2));
  for (auto& future : unnamed)
    CHECK(future.get().error().kind == ErrorKind::invalid_request);
}

TEST_CASE("a batch spanning several 1024-job chunks keeps its order and ids and rejects per job") {
  PoolOptions options = test::quiet_options(2);
  options.max_payload_bytes = 16;
  Pool pool(options);
  std::vector<Bytes> payloads;
  for (int i = 0; i < 2600; ++i)
    payloads.push_back(i == 1500 ? Bytes(17) : bytes(std::to_string(i)));
  std::vector<JobFuture> futures = pool.submit_batch("echo", payloads);
  REQUIRE(futures.size() == 2600);
  for (std::size_t i = 0; i < futures.size(); ++i) {
    INFO("job " << i);
    CHECK(futures[i].id() == futures[0].id() + i);
    JobResult result = futures[i].get();
    if (i == 1500) {
      REQUIRE_FALSE(result.ok());
      CHECK(result.error().kind == ErrorKind::payload_too_large);
    } else {
      REQUIRE(result.ok());
      CHECK(text(result.value()) == std::to_string(i));
    }
  }
}

TEST_CASE("a batch larger than the queue's free room queues what fits and rejects the rest") {
  PoolOptions options = test::quiet_options(1);
  options.queue_capacity = 4;
  options.prefetch.max_jobs_ahead = 0;
  Pool pool(options);
  test::Gate gate;
  JobFuture held = pool.submit("wait_fifo", gate.payload());
  REQUIRE(test::eventually([&] { return pool.stats().in_flight == 1; }));
  std::vector<JobFuture> futures = pool.submit_batch("echo", std::vector<Bytes>(10));
  for (std::size_t i = 4; i < 10; ++i) {
    REQUIRE(futures[i].wait_for(std::chrono::seconds(0)) == std::future_status::ready);
    CHECK(futures[i].get().error().kind == ErrorKind::queue_full);
  }
  gate.release();
  CHECK(held.get().ok());
  for (std::size_t i = 0; i < 4; ++i)
    CHECK(futures[i].get().ok());
}

TEST_CASE("the callback form of submit_batch reports each index exactly once") {
  Pool pool(test::quiet_options(2));
  constexpr std::size_t jobs = 300;
  std::mutex mutex;
  std::vector<int> calls(jobs, 0);
  std::vector<std::string> outputs(jobs);
  std::promise<void> all_done;
  std::size_t done = 0;
  std::vector<Bytes> payloads;
  for (std::size_t i = 0; i < jobs; ++i)
    payloads.push_back(bytes(std::to_string(i)));
  JobId first = pool.submit_batch("echo", payloads, {}, [&](std::size_t index, JobResult result) {
    std::lock_guard lock(mutex);
    ++calls[index];
    outputs[index] = result.ok() ? text(result.value()) : "error";
    if (++done == jobs) all_done.set_value();
  });
  CHECK(first > 0);
  all_done.get_future().get();
  for (std::size_t i = 0; i < jobs; ++i) {
    CHECK(calls[i] == 1);
    CHECK(outputs[i] == std::to_string(i));
  }
}

TEST_CASE("a typed batch encodes each request and decodes each response") {
  Pool pool(test::quiet_options(2));
  std::vector<std::string> requests{"one", "two", "three"};
  auto futures = pool.submit_batch<test::EchoText>(std::span<const std::string>(requests));
  REQUIRE(futures.size() == 3);
  for (std::size_t i = 0; i < 3; ++i)
    CHECK(futures[i].get().value() == requests[i]);
}
