// Pool is thread-safe: many threads submit, cancel and read stats at once.
#include <atomic>
#include <procpool/procpool.hpp>
#include <thread>

#include "catch.hpp"
#include "test_support.hpp"

using namespace procpool;

TEST_CASE("8 threads submitting at once each get exactly their own results") {
  Pool pool(test::quiet_options(2));
  constexpr int threads = 8;
  constexpr int per_thread = 500;
  std::atomic<int> wrong{0}, failed{0};
  std::vector<std::thread> submitters;
  for (int t = 0; t < threads; ++t) {
    submitters.emplace_back([&, t] {
      std::vector<std::pair<std::string, JobFuture>> mine;
      for (int i = 0; i < per_thread; ++i) {
        std::string payload = std::to_string(t) + ":" + std::to_string(i);
        mine.emplace_back(payload, pool.submit("echo", test::bytes(payload)));
        if (i % 50 == 0) (void)pool.stats();
      }
      for (auto& [payload, future] : mine) {
        JobResult result = future.get();
        if (!result.ok()) {
          ++failed;
        } else if (test::text(result.value()) != payload) {
          ++wrong;
        }
      }
    });
  }
  for (auto& thread : submitters)
    thread.join();
  CHECK(failed.load() == 0);
  CHECK(wrong.load() == 0);
  PoolStats stats = pool.stats();
  CHECK(stats.succeeded == threads * per_thread);
  CHECK(stats.tracked_jobs == 0);
}

TEST_CASE("callbacks from many threads each fire once, and may submit more work") {
  Pool pool(test::quiet_options(2));
  constexpr int total = 2000;
  std::atomic<int> first_done{0}, second_done{0};
  std::vector<std::thread> submitters;
  for (int t = 0; t < 4; ++t) {
    submitters.emplace_back([&] {
      for (int i = 0; i < total / 4; ++i) {
        pool.submit("echo", test::bytes("x"), SubmitOptions{}, [&](JobResult r) {
          if (r.ok()) ++first_done;
          // Chained submission from the supervisor thread, inside a callback.
          pool.submit("echo", test::bytes("y"), SubmitOptions{}, [&](JobResult r2) {
            if (r2.ok()) ++second_done;
          });
        });
      }
    });
  }
  for (auto& thread : submitters)
    thread.join();
  REQUIRE(test::eventually([&] { return second_done.load() == total; }, std::chrono::seconds(60)));
  CHECK(first_done.load() == total);
}

TEST_CASE("cancel races with dispatch without losing or duplicating an outcome") {
  Pool pool(test::quiet_options(2));
  std::atomic<int> outcomes{0}, cancelled{0};
  std::vector<JobId> ids;
  std::mutex ids_mutex;
  std::thread submitter([&] {
    for (int i = 0; i < 2000; ++i) {
      JobId id = pool.submit("echo", test::bytes("c"), SubmitOptions{}, [&](JobResult r) {
        ++outcomes;
        if (!r.ok() && r.error().kind == ErrorKind::cancelled) ++cancelled;
      });
      std::lock_guard lock(ids_mutex);
      ids.push_back(id);
    }
  });
  std::atomic<int> cancel_true{0};
  std::thread canceller([&] {
    for (int i = 0; i < 4000; ++i) {
      JobId id = 0;
      {
        std::lock_guard lock(ids_mutex);
        if (!ids.empty()) id = ids[static_cast<std::size_t>(i) % ids.size()];
      }
      if (id && pool.cancel(id)) ++cancel_true;
    }
  });
  submitter.join();
  canceller.join();
  REQUIRE(test::eventually([&] { return outcomes.load() == 2000; }, std::chrono::seconds(60)));
  CHECK(cancelled.load() == cancel_true.load());
}
