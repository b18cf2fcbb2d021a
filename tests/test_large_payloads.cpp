// Payloads and results far larger than a ring stream through it intact, also through a handler
// that owns its payload and returns it.
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <procpool/procpool.hpp>
#include <string>

#include "catch.hpp"
#include "test_support.hpp"

using namespace procpool;

namespace {

Bytes pattern(std::size_t n) {
  Bytes out(n);
  for (std::size_t i = 0; i < n; ++i)
    out[i] = static_cast<std::byte>((i * 31 + 7) & 0xff);
  return out;
}

}  // namespace

TEST_CASE("a 64 MiB payload goes in and a 64 MiB result comes out through a 64 KiB ring") {
  PoolOptions options = test::quiet_options(1);  // 64 KiB rings: 1024 ring-fulls each way
  Pool pool(options);
  const std::size_t size = std::size_t{64} << 20;
  Bytes payload = pattern(size);
  JobResult echoed = pool.submit("echo", std::span<const std::byte>(payload)).get();
  REQUIRE(echoed.ok());
  REQUIRE(echoed.value().size() == size);
  CHECK(echoed.value() == payload);

  std::uint64_t n = size;
  JobResult produced = pool.submit("produce", test::encode_value(n)).get();
  REQUIRE(produced.ok());
  CHECK(produced.value() == payload);
}

TEST_CASE("sizes around the ring's record boundaries arrive intact") {
  Pool pool(test::quiet_options(1));
  const std::size_t ring = std::size_t{64} << 10;
  const std::size_t body = ring / 4 - 16;  // one full record
  for (std::size_t size : {std::size_t{1}, std::size_t{7}, std::size_t{8}, body - 1, body, body + 1,
                           ring - 1, ring, ring + 1, 3 * ring + 5}) {
    INFO(size);
    Bytes payload = pattern(size);
    JobResult result = pool.submit("echo", std::span<const std::byte>(payload)).get();
    REQUIRE(result.ok());
    CHECK(result.value() == payload);
  }
}

TEST_CASE("large and small jobs interleave on several workers without mixing bytes") {
  Pool pool(test::quiet_options(2));
  std::vector<std::pair<Bytes, JobFuture>> jobs;
  for (std::size_t i = 0; i < 12; ++i) {
    Bytes payload = pattern((i % 3 == 0) ? (std::size_t{3} << 20) + i : 100 + i);
    payload[0] = static_cast<std::byte>(i);
    JobFuture f = pool.submit("echo", std::span<const std::byte>(payload));
    jobs.emplace_back(std::move(payload), std::move(f));
  }
  for (auto& [payload, future] : jobs) {
    JobResult result = future.get();
    REQUIRE(result.ok());
    CHECK(result.value() == payload);
  }
}

TEST_CASE("an owning handler changes its payload and returns it, job after job, at any size") {
  Pool pool(test::quiet_options(1));  // one worker: each job reuses the buffers of the last
  const std::size_t ring = std::size_t{64} << 10;
  // Sizes that grow and shrink: a reused request buffer must never show an earlier job's bytes.
  for (std::size_t size :
       {std::size_t{0}, std::size_t{1}, ring / 4 - 15, 3 * ring + 5, std::size_t{9} << 20,
        std::size_t{10}, std::size_t{5} << 20, std::size_t{3}}) {
    INFO(size);
    Bytes payload = pattern(size);
    JobResult result = pool.submit("owning_reverse", std::span<const std::byte>(payload)).get();
    REQUIRE(result.ok());
    std::reverse(payload.begin(), payload.end());
    CHECK(result.value() == payload);
  }
  JobResult failed = pool.submit("owning_throw", pattern(1000)).get();
  REQUIRE_FALSE(failed.ok());
  CHECK(failed.error().kind == ErrorKind::handler_error);
  CHECK(failed.error().message == "owning handler failed on 1000 bytes");
  Bytes after = pattern(77);
  JobResult next = pool.submit("owning_reverse", std::span<const std::byte>(after)).get();
  REQUIRE(next.ok());
  std::reverse(after.begin(), after.end());
  CHECK(next.value() == after);
  CHECK(pool.stats().workers_started == 1);
}

TEST_CASE("a payload and its result stream a ringful at a time to a worker on the host's CPU") {
  // With caller, supervisor thread and worker on one CPU, each record published on its own wakes
  // the other side, which takes the CPU: a context switch per record each way. A ringful at a time
  // costs a switch per ringful.
  test::PinnedToOneCpu pinned;
  Pool pool(test::quiet_options(1));  // 64 KiB rings, records of at most 16 KiB
  const std::size_t size = std::size_t{4} << 20;
  const Bytes payload = pattern(size);
  REQUIRE(pool.submit("echo", std::span<const std::byte>(payload)).get().ok());  // warm-up
  const int worker = pool.stats().workers.at(0).pid;

  const std::uint64_t before = test::context_switches(worker);
  JobResult echoed = pool.submit("echo", std::span<const std::byte>(payload)).get();
  const std::uint64_t switches = test::context_switches(worker) - before;
  REQUIRE(echoed.ok());
  CHECK(echoed.value() == payload);
  const std::uint64_t records = 2 * size / (std::size_t{16} << 10);   // 512, both ways
  const std::uint64_t ringfuls = 2 * size / (std::size_t{64} << 10);  // 128
  INFO("worker context switches over one 4 MiB echo: " << switches << " (" << records
                                                       << " records, " << ringfuls << " ringfuls)");
  CHECK(switches < records / 2);
}

namespace {

/// Virtual memory this process has mapped now.
std::uint64_t mapped_bytes() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmSize:", 0) == 0) return std::stoull(line.substr(7)) << 10;
  }
  return 0;
}

}  // namespace

TEST_CASE("a result the host cannot allocate fails its job alone; the pool serves on") {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  PROCPOOL_SKIP("the sanitizers' shadow memory does not run under RLIMIT_AS");
#endif
  // In a child process of its own (the test runner keeps its address space): a pool whose host
  // then has 256 MiB of address space left receives a 600 MiB result. Exit code 0: all held.
  pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    int failed = 0;
    try {
      PoolOptions options = test::quiet_options(2);
      options.max_result_bytes = std::uint64_t{1} << 30;
      Pool pool(options);
      if (!test::settled(pool, 2)) ::_exit(10);
      const rlimit tight{mapped_bytes() + (std::uint64_t{256} << 20), RLIM_INFINITY};
      if (::setrlimit(RLIMIT_AS, &tight) != 0) ::_exit(11);
      const std::uint64_t big = std::uint64_t{600} << 20;
      JobFuture bystander = pool.submit("sleep_ms", test::encode_value(std::uint32_t{200}));
      JobResult queued = pool.submit("produce", test::encode_value(big)).get();
      if (queued.ok() || queued.error().kind != ErrorKind::payload_too_large) failed |= 1;
      if (!queued.ok() &&
          queued.error().message.find("could not allocate memory for the job's result") ==
              std::string::npos) {
        failed |= 2;
      }
      JobResult called = pool.call("produce", test::encode_value(big));
      if (called.ok() || called.error().kind != ErrorKind::payload_too_large) failed |= 4;
      if (!bystander.get().ok()) failed |= 8;
      JobResult after = pool.submit("echo", test::bytes("after")).get();
      if (!after.ok() || test::text(after.value()) != "after") failed |= 16;
      if (pool.stats().health != PoolHealth::healthy) failed |= 32;
    } catch (...) {
      failed |= 64;
    }
    ::_exit(failed);
  }
  int status = 0;
  REQUIRE(test::eventually([&] { return ::waitpid(child, &status, WNOHANG) == child; },
                           std::chrono::seconds(60)));
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}
