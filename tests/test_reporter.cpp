// The reporter: log lines and events reach the pool's sinks, whose exceptions lose nothing else;
// lines and events raised inside a Deferral wait for the supervisor thread and come from it, in
// order, none lost however many threads defer; and jobs are counted by outcome.
#include <atomic>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "catch.hpp"
#include "reporter.hpp"

using namespace procpool;
using procpool::detail::Reporter;

namespace {

// What a sink saw: each line, and the thread it saw it on.
struct Seen {
  std::mutex mutex;
  std::vector<std::string> lines;
  std::vector<std::string> events;
  std::vector<std::thread::id> threads;

  LogSink sink() {
    return [this](LogLevel, std::string_view line) {
      std::lock_guard lock(mutex);
      lines.emplace_back(line);
      threads.push_back(std::this_thread::get_id());
    };
  }
  EventCallback callback() {
    return [this](const PoolEvent& event) {
      std::lock_guard lock(mutex);
      events.push_back(event.message);
    };
  }
};

PoolEvent event(std::string message) {
  PoolEvent e;
  e.type = EventType::ready;
  e.message = std::move(message);
  return e;
}

}  // namespace

TEST_CASE("lines and events reach the sinks; a sink's exception loses only its own line") {
  Seen seen;
  bool throw_line = false;
  Reporter reporter(
      [&](LogLevel level, std::string_view line) {
        if (throw_line) throw std::runtime_error("sink down");
        seen.sink()(level, line);
      },
      [&](const PoolEvent& e) {
        if (e.message == "bad") throw std::runtime_error("callback down");
        seen.callback()(e);
      });
  reporter.log(LogLevel::info, "one");
  throw_line = true;
  reporter.log(LogLevel::info, "lost");
  throw_line = false;
  reporter.emit(event("two"), LogLevel::info);
  reporter.emit(event("bad"), LogLevel::info);
  CHECK(seen.lines ==
        std::vector<std::string>{"one", "two", "bad", "the event callback threw: callback down"});
  CHECK(seen.events == std::vector<std::string>{"two"});
}

TEST_CASE("inside a Deferral, lines and events wait, and come in order from the emitting thread") {
  Seen seen;
  Reporter reporter(seen.sink(), seen.callback());
  Seen other_seen;
  Reporter other(other_seen.sink(), nullptr);
  CHECK_FALSE(reporter.has_deferred());
  std::thread caller([&] {
    Reporter::Deferral deferral(reporter);
    reporter.log(LogLevel::warning, "a");
    reporter.emit(event("b"), LogLevel::info);
    other.log(LogLevel::info, "not deferred: another reporter's");
  });
  caller.join();
  CHECK(seen.lines.empty());
  CHECK(seen.events.empty());
  CHECK(other_seen.lines.size() == 1);
  REQUIRE(reporter.has_deferred());
  reporter.emit_deferred();
  CHECK_FALSE(reporter.has_deferred());
  CHECK(seen.lines == std::vector<std::string>{"a", "b"});
  CHECK(seen.events == std::vector<std::string>{"b"});
  for (std::thread::id id : seen.threads)
    CHECK(id == std::this_thread::get_id());
  // Out of the Deferral, on this thread: at once.
  reporter.log(LogLevel::info, "c");
  CHECK(seen.lines.back() == "c");
  CHECK_FALSE(reporter.has_deferred());
}

TEST_CASE("lines deferred by many threads while the supervisor emits are none of them lost") {
  Seen seen;
  Reporter reporter(seen.sink(), nullptr);
  constexpr int threads = 4, per_thread = 500;
  std::atomic<int> finished{0};
  std::vector<std::thread> callers;
  for (int t = 0; t < threads; ++t) {
    callers.emplace_back([&, t] {
      for (int i = 0; i < per_thread; ++i) {
        Reporter::Deferral deferral(reporter);
        reporter.log(LogLevel::info, std::to_string(t) + ":" + std::to_string(i));
      }
      ++finished;
    });
  }
  while (finished < threads)
    reporter.emit_deferred();
  for (auto& c : callers)
    c.join();
  reporter.emit_deferred();
  REQUIRE(seen.lines.size() == threads * per_thread);
  // Each thread's lines in its order.
  std::vector<int> next(threads, 0);
  for (const std::string& line : seen.lines) {
    const int t = std::stoi(line.substr(0, line.find(':')));
    const int i = std::stoi(line.substr(line.find(':') + 1));
    CHECK(i == next[t]);
    next[t] = i + 1;
  }
}

TEST_CASE("jobs are counted by outcome") {
  Reporter reporter(nullptr, nullptr);
  reporter.count_submitted(3);
  reporter.count(JobResult::success(Bytes{}));
  JobError error;
  error.kind = ErrorKind::timeout;
  reporter.count(JobResult::failure(error));
  reporter.count_retry();
  PoolStats stats;
  reporter.fill(stats);
  CHECK(stats.submitted == 3);
  CHECK(stats.succeeded == 1);
  CHECK(stats.failed == 1);
  CHECK(stats.failed_by_kind[static_cast<std::size_t>(ErrorKind::timeout)] == 1);
  CHECK(stats.retries == 1);
  CHECK(reporter.submitted() == 3);
}
