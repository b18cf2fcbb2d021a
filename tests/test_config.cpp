// Bad configuration fails at construction, with a message naming the field and what it accepts.
#include <filesystem>
#include <fstream>
#include <procpool/procpool.hpp>
#include <string>

#include "catch.hpp"
#include "test_support.hpp"

using namespace procpool;

namespace {

std::string config_error(const PoolOptions& options) {
  try {
    Pool pool(options);
  } catch (const ConfigError& e) {
    return std::string(e.field()) + " | " + e.what();
  }
  return "no error";
}

}  // namespace

TEST_CASE("options that cannot work are rejected with the field and the allowed values") {
  PoolOptions options = test::quiet_options();

  SECTION("too many workers") {
    options.workers = 5000;
    auto message = config_error(options);
    CHECK(message.find("PoolOptions::workers") == 0);
    CHECK(message.find("1024") != std::string::npos);
  }
  SECTION("a worker executable that does not exist") {
    options.worker_command = {"/nonexistent/worker"};
    auto message = config_error(options);
    CHECK(message.find("PoolOptions::worker_command") == 0);
    CHECK(message.find("/nonexistent/worker") != std::string::npos);
    CHECK(message.find("No such file") != std::string::npos);
  }
  SECTION("a worker path that is not executable") {
    std::string path = std::filesystem::temp_directory_path() / "procpool-test-not-executable";
    { std::ofstream(path) << "#!/bin/sh\n"; }
    std::filesystem::permissions(
        path, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
    options.worker_command = {path};
    auto message = config_error(options);
    std::filesystem::remove(path);
    CHECK(message.find("PoolOptions::worker_command") == 0);
    CHECK(message.find("not executable") != std::string::npos);
  }
  SECTION("a worker path that is a directory") {
    options.worker_command = {"/tmp"};
    CHECK(config_error(options).find("not a regular file") != std::string::npos);
  }
  SECTION("an empty worker path") {
    options.worker_command = {""};
    CHECK(config_error(options).find("PoolOptions::worker_command") == 0);
  }
  SECTION("a ring that is not a power of two") {
    options.ring_bytes = 100'000;
    auto message = config_error(options);
    CHECK(message.find("PoolOptions::ring_bytes") == 0);
    CHECK(message.find("power of two") != std::string::npos);
  }
  SECTION("a payload limit larger than the protocol can address") {
    options.max_payload_bytes = std::size_t{1} << 40;
    auto message = config_error(options);
    CHECK(message.find("PoolOptions::max_payload_bytes") == 0);
    CHECK(message.find("allowed") != std::string::npos);
  }
  SECTION("a zero result limit") {
    options.max_result_bytes = 0;
    CHECK(config_error(options).find("PoolOptions::max_result_bytes") == 0);
  }
  SECTION("a zero queue") {
    options.queue_capacity = 0;
    CHECK(config_error(options).find("PoolOptions::queue_capacity") == 0);
  }
  SECTION("negative durations") {
    options.job_timeout = std::chrono::milliseconds(-1);
    CHECK(config_error(options).find("PoolOptions::job_timeout") == 0);
  }
  SECTION("a zero start timeout") {
    options.start_timeout = std::chrono::milliseconds(0);
    CHECK(config_error(options).find("PoolOptions::start_timeout") == 0);
  }
  SECTION("a backoff that starts above its cap") {
    options.restart_backoff_initial = std::chrono::seconds(20);
    options.restart_backoff_max = std::chrono::seconds(1);
    CHECK(config_error(options).find("PoolOptions::restart_backoff_initial") == 0);
  }
  SECTION("min_workers above workers") {
    options.workers = 2;
    options.min_workers = 3;
    auto message = config_error(options);
    CHECK(message.find("PoolOptions::min_workers") == 0);
    CHECK(message.find("allowed: 0..2") != std::string::npos);
  }
  SECTION("a soft limit at or above the hard limit") {
    options.recycle.memory_soft_limit = 200 << 20;
    options.recycle.memory_hard_limit = 100 << 20;
    auto message = config_error(options);
    CHECK(message.find("RecyclePolicy::memory_soft_limit") == 0);
    CHECK(message.find("memory_hard_limit") != std::string::npos);
  }
  SECTION("jitter without a limit") {
    options.recycle.max_jobs_jitter = 5;
    CHECK(config_error(options).find("RecyclePolicy::max_jobs_jitter") == 0);
  }
  SECTION("more prefetched jobs than a ring could sensibly hold") {
    options.prefetch.max_jobs_ahead = 4097;
    CHECK(config_error(options).find("PrefetchPolicy::max_jobs_ahead") == 0);
  }
  SECTION("a negative prefetch time") {
    options.prefetch.max_work_ahead = std::chrono::microseconds(-1);
    CHECK(config_error(options).find("PrefetchPolicy::max_work_ahead") == 0);
    options.prefetch.max_work_ahead = std::chrono::microseconds(0);
    options.prefetch.when_jobs_take_under = std::chrono::microseconds(-1);
    CHECK(config_error(options).find("PrefetchPolicy::when_jobs_take_under") == 0);
  }
  SECTION("a spin budget of nothing or of more than a millisecond") {
    options.spin.budget = std::chrono::microseconds(0);
    CHECK(config_error(options).find("SpinPolicy::budget") == 0);
    options.spin.budget = std::chrono::microseconds(1001);
    CHECK(config_error(options).find("SpinPolicy::budget") == 0);
    CHECK(config_error(options).find("SpinPolicy::enabled = false") != std::string::npos);
  }
  SECTION("a memory sample interval too short to be cheap") {
    options.recycle.memory_sample_interval = std::chrono::milliseconds(1);
    CHECK(config_error(options).find("RecyclePolicy::memory_sample_interval") == 0);
  }
  SECTION("a memory reading interval that is negative or longer than the sample interval") {
    options.recycle.memory_read_min_interval = std::chrono::microseconds(-1);
    CHECK(config_error(options).find("RecyclePolicy::memory_read_min_interval") == 0);
    options.recycle.memory_read_min_interval =
        options.recycle.memory_sample_interval + std::chrono::microseconds(1);
    CHECK(config_error(options).find("RecyclePolicy::memory_read_min_interval") == 0);
  }
  SECTION("no recycling slot") {
    options.recycle.max_concurrent_recycles = 0;
    CHECK(config_error(options).find("RecyclePolicy::max_concurrent_recycles") == 0);
  }
  SECTION("an address-space cap too small to start") {
    options.recycle.address_space_limit = 1 << 20;
    CHECK(config_error(options).find("RecyclePolicy::address_space_limit") == 0);
  }
  SECTION("an allow-list entry that is not a variable name") {
    options.security.environment.allow.push_back("A=B");
    auto message = config_error(options);
    CHECK(message.find("WorkerEnvironment::allow") == 0);
    CHECK(message.find("'A=B'") != std::string::npos);
  }
  SECTION("a worker variable set twice") {
    options.security.environment.set = {{"KEY", "1"}, {"KEY", "2"}};
    auto message = config_error(options);
    CHECK(message.find("WorkerEnvironment::set") == 0);
    CHECK(message.find("KEY is set twice") != std::string::npos);
  }
  SECTION("a worker variable with an empty name") {
    options.security.environment.set = {{"", "1"}};
    CHECK(config_error(options).find("WorkerEnvironment::set") == 0);
  }
  SECTION("too few descriptors for a worker to start") {
    options.security.max_open_files = 4;
    auto message = config_error(options);
    CHECK(message.find("WorkerSecurity::max_open_files") == 0);
    CHECK(message.find("at least 16") != std::string::npos);
  }
}

TEST_CASE("zero workers means one per hardware thread") {
  PoolOptions options = test::quiet_options();
  options.workers = 0;
  Pool pool(options);
  CHECK(test::eventually([&] {
    return pool.stats().workers.size() == std::max(1u, std::thread::hardware_concurrency());
  }));
}

TEST_CASE("a registry rejects empty, duplicate and over-long names and empty handlers") {
  JobRegistry jobs;
  auto echo = [](JobContext&, std::span<const std::byte> in) {
    return Bytes(in.begin(), in.end());
  };
  jobs.add("echo", echo);
  CHECK_THROWS_AS(jobs.add("echo", echo), ConfigError);
  CHECK_THROWS_AS(jobs.add("", echo), ConfigError);
  CHECK_THROWS_AS(jobs.add(std::string(300, 'x'), echo), ConfigError);
  CHECK_THROWS_AS(jobs.add("empty", JobHandler{}), ConfigError);
  CHECK(jobs.find("echo") != nullptr);
  CHECK(jobs.find("nope") == nullptr);
  CHECK(jobs.names() == std::vector<std::string>{"echo"});
}

TEST_CASE("a registry keeps one handler of one kind per name") {
  JobRegistry jobs;
  auto echo = [](JobContext&, std::span<const std::byte> in) {
    return Bytes(in.begin(), in.end());
  };
  auto owning = [](JobContext&, Bytes payload) { return payload; };
  auto in_place = [](JobContext&, std::span<const std::byte>, std::span<std::byte>) {
    return std::size_t{0};
  };
  jobs.add("a", echo);
  jobs.add_owning("b", owning);
  jobs.add_in_place("c", in_place);
  for (const char* name : {"a", "b", "c"}) {
    INFO(name);
    CHECK_THROWS_AS(jobs.add(name, echo), ConfigError);
    CHECK_THROWS_AS(jobs.add_owning(name, owning), ConfigError);
    CHECK_THROWS_AS(jobs.add_in_place(name, in_place), ConfigError);
  }
  CHECK_THROWS_AS(jobs.add_owning("empty", OwningJobHandler{}), ConfigError);
  CHECK_THROWS_AS(jobs.add_owning("", owning), ConfigError);
  CHECK(jobs.find_owning("b") != nullptr);
  CHECK(jobs.find_owning("a") == nullptr);
  CHECK(jobs.find("b") == nullptr);
  CHECK(jobs.find_in_place("b") == nullptr);
  CHECK(jobs.names() == std::vector<std::string>{"a", "b", "c"});
}

TEST_CASE("a worker executable started by hand explains itself and exits 2") {
  std::string command = test::test_worker_path() + " 2>&1";
  FILE* pipe = ::popen(command.c_str(), "r");
  REQUIRE(pipe != nullptr);
  char buffer[512] = {};
  std::string out;
  while (std::fgets(buffer, sizeof buffer, pipe))
    out += buffer;
  int status = ::pclose(pipe);
  CHECK(WEXITSTATUS(status) == 2);
  CHECK(out.find("procpool worker executable") != std::string::npos);
}
