// AdaptiveSpin polls for an event within its budget, sees one another thread produces, gives up
// when the budget runs out, backs off after misses in a row (counting the waits it skips, also for
// a caller that decides before it polls) and recovers on a success; a pool
// serves the same jobs with SpinPolicy on and off.
#include <atomic>
#include <procpool/procpool.hpp>
#include <thread>

#include "adaptive_spin.hpp"
#include "catch.hpp"
#include "test_support.hpp"

using namespace procpool;
using namespace std::chrono_literals;
using detail::AdaptiveSpin;

namespace {

// Runs one poll that never succeeds and returns how often it looked.
int missed_poll(AdaptiveSpin& spin) {
  int looks = 0;
  CHECK_FALSE(spin.poll([&] {
    ++looks;
    return false;
  }));
  return looks;
}

}  // namespace

TEST_CASE("a yield that ran another thread ends the poll") {
  // Any yield counts as contended at a threshold of zero: one look before it, one after.
  AdaptiveSpin spin(std::chrono::seconds(60), std::chrono::nanoseconds(0));
  CHECK(missed_poll(spin) == 2);
}

TEST_CASE("a budget of zero never polls") {
  AdaptiveSpin spin;
  CHECK_FALSE(spin.willing());
  CHECK(missed_poll(spin) == 0);
}

TEST_CASE("an event that is already there is seen at once") {
  AdaptiveSpin spin(1ms);
  int looks = 0;
  CHECK(spin.poll([&] { return ++looks > 0; }));
  CHECK(looks == 1);
}

TEST_CASE("an event another thread produces during the poll is seen") {
  // A budget far longer than the test may take, and no yield counted as contention (the producer
  // may run on this CPU during one): the poll ends because the event arrived.
  AdaptiveSpin spin(std::chrono::seconds(60), std::chrono::seconds(120));
  std::atomic<bool> started{false}, event{false};
  std::thread producer([&] {
    while (!started.load())
      std::this_thread::yield();
    event.store(true);
  });
  bool seen = spin.poll([&] {
    started.store(true);
    return event.load();
  });
  producer.join();
  CHECK(seen);
}

TEST_CASE("a poll that finds nothing gives up, within its budget or the caller's shorter limit") {
  AdaptiveSpin spin(5ms);
  auto start = AdaptiveSpin::Clock::now();
  CHECK(missed_poll(spin) >= 1);
  // A poll also ends early when a yield ran another thread; then it lasts less than the budget.
  // Either way it ends, and the next one is not skipped after a lone miss.
  CHECK(AdaptiveSpin::Clock::now() - start < std::chrono::seconds(10));
  CHECK(spin.willing());

  AdaptiveSpin limited(std::chrono::seconds(60));
  start = AdaptiveSpin::Clock::now();
  CHECK_FALSE(limited.poll([] { return false; }, 2ms));
  CHECK(AdaptiveSpin::Clock::now() - start < std::chrono::seconds(10));
}

TEST_CASE("misses in a row make the next waits sleep at once; a success resets that") {
  AdaptiveSpin spin(100us);
  CHECK(missed_poll(spin) >= 1);  // 1 miss: nothing skipped
  CHECK(spin.willing());
  CHECK(missed_poll(spin) >= 1);  // 2 in a row: the next wait is skipped
  CHECK_FALSE(spin.willing());
  CHECK(missed_poll(spin) == 0);  // skipped, without looking
  CHECK(spin.willing());
  CHECK(missed_poll(spin) >= 1);  // 3 in a row: 3 skipped
  for (int i = 0; i < 3; ++i)
    CHECK(missed_poll(spin) == 0);
  CHECK(spin.willing());
  CHECK(spin.poll([] { return true; }));  // a success: back to polling every wait
  CHECK(missed_poll(spin) >= 1);
  CHECK(spin.willing());
}

TEST_CASE("a wait that decides before it polls counts as skipped while backing off") {
  // The supervisor's way: take_turn() first (it arms or disarms its wake-ups on the answer), then
  // poll_now(). Waits it sleeps through must end the back-off as poll() would.
  AdaptiveSpin spin(100us);
  auto missed_turn = [&] {
    REQUIRE(spin.take_turn());
    CHECK_FALSE(spin.poll_now([] { return false; }));
  };
  missed_turn();
  missed_turn();  // 2 in a row: the next wait is skipped
  CHECK_FALSE(spin.willing());
  CHECK_FALSE(spin.take_turn());  // skipped, and counted
  CHECK(spin.willing());
  missed_turn();  // 3 in a row: 3 skipped
  for (int i = 0; i < 3; ++i)
    CHECK_FALSE(spin.take_turn());
  REQUIRE(spin.take_turn());
  CHECK(spin.poll_now([] { return true; }));
  CHECK(spin.take_turn());
}

TEST_CASE("backing off never skips more than 63 waits in a row") {
  AdaptiveSpin spin(10us);
  int skipped_in_a_row = 0, longest = 0;
  for (int i = 0; i < 1000; ++i) {
    if (missed_poll(spin) == 0) {
      longest = std::max(longest, ++skipped_in_a_row);
    } else {
      skipped_in_a_row = 0;
    }
  }
  CHECK(longest == 63);
}

TEST_CASE("a pool gives every job its outcome with SpinPolicy on and off, from several callers") {
  for (bool enabled : {true, false}) {
    INFO("SpinPolicy::enabled = " << enabled);
    PoolOptions options = test::quiet_options(2);
    options.spin.enabled = enabled;
    options.spin.budget = 1000us;
    Pool pool(options);
    std::atomic<int> wrong{0};
    std::vector<std::thread> callers;
    for (int c = 0; c < 3; ++c) {
      callers.emplace_back([&, c] {
        for (int i = 0; i < 300; ++i) {
          std::string text = std::to_string(c) + ":" + std::to_string(i);
          JobResult result = pool.submit("echo", test::bytes(text)).get();
          if (!result.ok() || test::text(result.value()) != text) ++wrong;
        }
      });
    }
    for (auto& t : callers)
      t.join();
    CHECK(wrong.load() == 0);
    PoolStats stats = pool.stats();
    CHECK(stats.succeeded == 900);
    CHECK(stats.workers_started == 2);
  }
}
