// When the supervisor thread fails (an exception leaves its loop: here an allocation it cannot
// make), every job still gets exactly one outcome, at once: the queued ones, the ones in workers,
// and a Pool::call thread asleep on its worker's result is woken rather than left to its timer.
//
// This binary replaces operator new and delete (malloc and free underneath) so that it can make
// one allocation on the supervisor thread fail; nothing else changes.
#include <atomic>
#include <cstdlib>
#include <new>
#include <optional>
#include <procpool/procpool.hpp>
#include <thread>

#include "catch.hpp"
#include "test_support.hpp"

namespace {

/// The thread whose next allocation fails (once), or none.
std::atomic<std::thread::id> fail_next_allocation_on{};

}  // namespace

void* operator new(std::size_t bytes) {
  const std::thread::id target = fail_next_allocation_on.load(std::memory_order_relaxed);
  if (target != std::thread::id() && target == std::this_thread::get_id() &&
      fail_next_allocation_on.compare_exchange_strong(const_cast<std::thread::id&>(target),
                                                      std::thread::id())) {
    throw std::bad_alloc();
  }
  if (void* p = std::malloc(bytes ? bytes : 1)) return p;
  throw std::bad_alloc();
}
// Every form the delete operators below may free is allocated here (sanitizers check the pairs).
void* operator new(std::size_t bytes, const std::nothrow_t&) noexcept {
  return std::malloc(bytes ? bytes : 1);
}
void operator delete(void* p, const std::nothrow_t&) noexcept {
  std::free(p);
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}

using namespace procpool;
using namespace std::chrono_literals;

TEST_CASE("a failing supervisor thread gives every job its outcome at once, Pool::call's too") {
  std::atomic<std::thread::id> supervisor_thread{};
  PoolOptions options = test::quiet_options(2);
  // Pool::call hands its job to an idle worker itself and sleeps on the worker's result.
  options.spin.enabled = false;
  // Its sleep ends at the worker's next timer at the latest: far off here.
  options.recycle.memory_sample_interval = 60s;
  options.on_event = [&](const PoolEvent&) {
    supervisor_thread.store(std::this_thread::get_id(), std::memory_order_relaxed);
  };
  Pool pool(options);
  REQUIRE(test::settled(pool, 2));
  REQUIRE(supervisor_thread.load() != std::thread::id());

  test::Gate gate;
  std::atomic<bool> call_returned{false};
  std::optional<JobResult> called;
  std::thread caller([&] {
    called.emplace(pool.call("wait_fifo", gate.payload()));
    call_returned = true;
  });
  REQUIRE(test::eventually([&] { return pool.stats().in_flight == 1; }));

  // The next allocation of the supervisor thread, once this submit wakes it, is the queued job's
  // as it is given to the idle worker: it fails, and the loop ends.
  fail_next_allocation_on.store(supervisor_thread.load());
  JobFuture queued = pool.submit("echo", test::bytes("x"));

  CHECK(test::eventually([&] { return call_returned.load(); }, 10s));
  CHECK(queued.wait_for(10s) == std::future_status::ready);
  CHECK(fail_next_allocation_on.load() == std::thread::id());  // the failure happened
  caller.join();
  REQUIRE(called);
  REQUIRE_FALSE(called->ok());
  CHECK(called->error().kind == ErrorKind::shutting_down);
  JobResult result = queued.get();
  REQUIRE_FALSE(result.ok());
  CHECK(result.error().kind == ErrorKind::shutting_down);
  // And the pool refuses what comes after, saying why.
  JobResult after = pool.submit("echo", test::bytes("y")).get();
  REQUIRE_FALSE(after.ok());
  CHECK(after.error().kind == ErrorKind::shutting_down);
}
