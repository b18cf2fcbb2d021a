// AdaptiveSpin polls for an event within its budget, sees one another thread produces, ends a
// poll whose yield ran another thread but not one whose yield only took long, gives up when the
// budget runs out, backs off after misses in a row (counting the waits it skips, also for
// a caller that decides before it polls) and recovers on a success; a pool
// serves the same jobs with SpinPolicy on and off.
#include <sched.h>

#include <atomic>
#include <procpool/procpool.hpp>
#include <thread>

#include "adaptive_spin.hpp"
#include "catch.hpp"
#include "platform/platform.hpp"
#include "test_support.hpp"

using namespace procpool;
using namespace std::chrono_literals;
using detail::AdaptiveSpin;
using detail::job_holds_cpu;

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

int first_allowed_cpu() {
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  REQUIRE(::sched_getaffinity(0, sizeof allowed, &allowed) == 0);
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &allowed)) return cpu;
  }
  FAIL("no CPU allowed");
  return -1;
}

// Pins the calling thread (only) to `cpu`.
void pin_to(int cpu) {
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(cpu, &one);
  REQUIRE(::sched_setaffinity(0, sizeof one, &one) == 0);
}

}  // namespace

TEST_CASE("a yield that ran another thread ends the poll") {
  // Two threads on one CPU, the other always runnable, so yields run it. At a threshold of zero
  // every yield is long enough: the poll ends at the first yield that ran the peer, one look
  // after it (the scheduler may give the CPU straight back on a yield or two first), long
  // before its 60 s budget.
  int looks = 0;
  std::thread([&] {
    pin_to(first_allowed_cpu());  // the peer inherits it
    std::atomic<bool> running{false}, stop{false};
    std::thread peer([&] {
      running = true;
      while (!stop.load())
        platform::yield_cpu();
    });
    while (!running.load())
      platform::yield_cpu();
    AdaptiveSpin spin(std::chrono::seconds(60), std::chrono::nanoseconds(0));
    looks = missed_poll(spin);
    stop = true;
    peer.join();
  }).join();
  CHECK(looks >= 2);
  CHECK(looks < 100);
}

TEST_CASE("a long yield that ran no other thread does not end the poll") {
  // The same zero threshold with no other thread on the CPU: a yield that took long lost the CPU
  // to the hypervisor or an interrupt, not to a thread here, so the poll goes on. Another process
  // may take this CPU now and then on a loaded machine, ending a poll, so it tries polls of 5
  // looks for up to 10 s until one runs through (under the rule that ended a poll on any long
  // yield, none could).
  int completed = 0;
  std::thread poller([&] {
    pin_to(first_allowed_cpu());  // alone: this thread only
    auto give_up = std::chrono::steady_clock::now() + 10s;
    while (completed == 0 && std::chrono::steady_clock::now() < give_up) {
      AdaptiveSpin spin(std::chrono::seconds(10), std::chrono::nanoseconds(0));  // no back-off
      int looks = 0;
      completed += spin.poll([&] { return ++looks == 5; }) ? 1 : 0;
    }
  });
  poller.join();
  CHECK(completed > 0);
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

TEST_CASE("a worker's job keeps a CPU from pollers unless it is short and about to end") {
  const auto budget = 200us;
  // Jobs typically shorter than a poll: free to poll beside it until it has run that long.
  CHECK_FALSE(job_holds_cpu(50us, 0us, budget));
  CHECK_FALSE(job_holds_cpu(50us, 199us, budget));
  CHECK(job_holds_cpu(50us, 200us, budget));
  CHECK(job_holds_cpu(50us, 5ms, budget));
  // Jobs as long as a poll or longer, or not known yet: the CPU is taken.
  CHECK(job_holds_cpu(200us, 0us, budget));
  CHECK(job_holds_cpu(10ms, 0us, budget));
  CHECK(job_holds_cpu(std::nullopt, 0us, budget));
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
