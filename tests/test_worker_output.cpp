// A worker's output: cut into lines, the last ones kept for errors, and logged at a bounded rate,
// so that a worker flooding its stdout can neither starve the supervisor thread nor, once dead,
// hold its job's outcome with a grandchild that keeps writing into the pipe.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <procpool/procpool.hpp>
#include <regex>
#include <string>
#include <vector>

#include "catch.hpp"
#include "test_support.hpp"
#include "worker_output.hpp"

using namespace procpool;
using detail::WorkerOutput;
using procpool::test::encode_value;
using procpool::test::LogLines;
using procpool::test::text;

namespace {

using Clock = WorkerOutput::Clock;

/// The "y" lines logged, and the lines reported as not logged.
std::pair<std::uint64_t, std::uint64_t> flood_lines(LogLines& log) {
  std::uint64_t logged = 0, dropped = 0;
  const std::regex notice(R"(^worker \d+: \((\d+) more line\(s\) of output not logged)");
  for (const std::string& line : log.lines()) {
    std::smatch m;
    if (std::regex_search(line, m, notice)) {
      dropped += std::stoull(m[1]);
    } else if (line.size() >= 3 && line.compare(line.size() - 3, 3, ": y") == 0) {
      ++logged;
    }
  }
  return {logged, dropped};
}

std::vector<std::string> take(WorkerOutput& output, std::string_view bytes, Clock::time_point now) {
  std::vector<std::string> logged;
  output.take(bytes, now, logged);
  return logged;
}

}  // namespace

TEST_CASE("output is cut into lines, over-long ones cut at the limit, the last ones kept") {
  WorkerOutput output(2);
  const Clock::time_point t0{};
  CHECK(take(output, "one\ntw", t0) == std::vector<std::string>{"one"});
  CHECK(take(output, "o\nthree\n", t0) == std::vector<std::string>{"two", "three"});
  CHECK(output.tail() == std::deque<std::string>{"two", "three"});
  const std::string long_line(WorkerOutput::max_line_bytes + 10, 'x');
  std::vector<std::string> logged = take(output, long_line, t0);
  REQUIRE(logged.size() == 1);
  CHECK(logged[0].size() == WorkerOutput::max_line_bytes);
  std::vector<std::string> rest;
  output.finish(t0, rest);
  CHECK(rest == std::vector<std::string>{std::string(10, 'x')});
}

TEST_CASE("past a burst, lines are logged at a rate and the others counted") {
  WorkerOutput output(0);
  const Clock::time_point t0 = Clock::time_point{} + std::chrono::hours(1);
  std::string burst;
  const auto burst_lines = static_cast<std::size_t>(WorkerOutput::log_burst);
  for (std::size_t i = 0; i < burst_lines + 50; ++i)
    burst += "y\n";
  CHECK(take(output, burst, t0).size() == burst_lines);  // 50 dropped
  // A second later: the 50 are reported before the next line, and 100 more lines may come.
  std::vector<std::string> later = take(output, "a\n", t0 + std::chrono::seconds(1));
  REQUIRE(later.size() == 2);
  CHECK(later[0] == "(50 more line(s) of output not logged: over 100 a second)");
  CHECK(later[1] == "a");
  CHECK(output.dropped_total() == 50);
  // What is dropped at the end is reported when the output ends.
  std::string more;
  for (int i = 0; i < 300; ++i)
    more += "z\n";
  CHECK(take(output, more, t0 + std::chrono::seconds(1)).size() == 99);
  std::vector<std::string> last;
  output.finish(t0 + std::chrono::seconds(1), last);
  CHECK(last ==
        std::vector<std::string>{"(201 more line(s) of output not logged: over 100 a second)"});
}

TEST_CASE("a worker flooding its output: every line logged or counted, the other worker serves") {
  LogLines log;
  PoolOptions options = procpool::test::quiet_options(2);
  options.log = log.sink();
  Pool pool(options);
  REQUIRE(procpool::test::settled(pool, 2));
  constexpr std::uint32_t lines = 200'000;
  JobResult flooded = pool.submit("flood_output", encode_value(lines)).get();
  REQUIRE(flooded.ok());
  // The worker's output is read after its result: wait until all of it has been accounted for.
  REQUIRE(procpool::test::eventually([&] {
    auto [logged, dropped] = flood_lines(log);
    return logged + dropped >= lines;
  }));
  auto [logged, dropped] = flood_lines(log);
  CHECK(logged + dropped == lines);
  CHECK(dropped > 0);
  CHECK(logged < lines / 10);

  // A worker that floods for ever: the other one still serves, and the flood's timeout fires.
  SubmitOptions bounded;
  bounded.timeout = std::chrono::seconds(3);
  JobFuture endless = pool.submit("flood_output", encode_value(std::uint32_t{0}), bounded);
  REQUIRE(procpool::test::eventually([&] { return pool.stats().in_flight == 1; }));
  for (int i = 0; i < 20; ++i) {
    JobFuture echo = pool.submit("echo", procpool::test::bytes("beside"));
    REQUIRE(echo.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
    CHECK(text(echo.get().value()) == "beside");
  }
  REQUIRE(endless.wait_for(std::chrono::seconds(20)) == std::future_status::ready);
  CHECK(endless.get().error().kind == ErrorKind::timeout);
}

TEST_CASE(
    "a dead worker's output is read to a bound: a grandchild writing for ever holds nothing") {
  // A sink that costs system calls per line, as one writing to a terminal or a file does: far
  // slower than a writer of big chunks, so that reading until the pipe is empty would never end.
  PoolOptions options = procpool::test::quiet_options(1);
  const int devnull = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
  REQUIRE(devnull >= 0);
  options.log = [devnull](LogLevel, std::string_view line) {
    for (int i = 0; i < 16; ++i) {
      [[maybe_unused]] auto n = ::write(devnull, line.data(), line.size());
    }
  };
  Pool pool(options);
  const std::string pid_file = (std::filesystem::temp_directory_path() /
                                ("procpool-escaped-writer-" + std::to_string(::getpid())))
                                   .string();
  JobFuture dying = pool.submit("escaped_writer_then_exit", procpool::test::bytes(pid_file));
  const bool outcome = dying.wait_for(std::chrono::seconds(20)) == std::future_status::ready;
  int writer = 0;
  std::ifstream(pid_file) >> writer;
  std::filesystem::remove(pid_file);
  if (writer > 0) ::kill(writer, SIGKILL);
  REQUIRE(outcome);
  JobResult result = dying.get();
  REQUIRE_FALSE(result.ok());
  CHECK(result.error().kind == ErrorKind::worker_crashed);
  CHECK(text(pool.submit("echo", procpool::test::bytes("after")).get().value()) == "after");
}
