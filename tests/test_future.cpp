// A Future gets exactly the outcome its pool set, once, whichever thread sets it and whether the
// reader waits before or after; waits with a timeout return in time; misuse throws future_error.
#include <atomic>
#include <procpool/procpool.hpp>
#include <thread>

#include "catch.hpp"
#include "outcome_promise.hpp"
#include "test_support.hpp"

using namespace procpool;
using namespace std::chrono_literals;
using detail::OutcomePromise;
using test::bytes;
using test::text;

namespace {

JobFuture future_of(const OutcomePromise& promise, JobId id = 7) {
  return JobFuture(id, promise.state());
}

JobError failure(ErrorKind kind, std::string message) {
  JobError error;
  error.kind = kind;
  error.message = std::move(message);
  return error;
}

}  // namespace

TEST_CASE("an outcome set before get() is returned at once, with the job's id kept") {
  OutcomePromise promise;
  JobFuture future = future_of(promise, 42);
  promise.set(JobResult::success(bytes("done")));
  CHECK(future.id() == 42);
  CHECK(future.wait_for(0s) == std::future_status::ready);
  JobResult result = future.get();
  REQUIRE(result.ok());
  CHECK(text(result.value()) == "done");
  CHECK_FALSE(future.valid());
}

TEST_CASE("get() blocked on another thread wakes when the outcome is set") {
  OutcomePromise promise;
  JobFuture future = future_of(promise);
  std::atomic<bool> waiting{false};
  std::optional<JobResult> seen;
  std::thread reader([&] {
    waiting = true;
    seen.emplace(future.get());
  });
  // The reader may or may not be asleep yet when the outcome is set; both orders must work, and
  // repeating the case below covers the one this run did not hit.
  while (!waiting)
    std::this_thread::yield();
  promise.set(JobResult::success(bytes("late")));
  reader.join();
  REQUIRE(seen.has_value());
  REQUIRE(seen->ok());
  CHECK(text(seen->value()) == "late");
}

TEST_CASE("many outcomes set on one thread while another reads them in order all arrive") {
  constexpr int count = 20000;
  std::vector<OutcomePromise> promises(count);
  std::vector<JobFuture> futures;
  futures.reserve(count);
  for (int i = 0; i < count; ++i)
    futures.push_back(future_of(promises[i], static_cast<JobId>(i)));
  std::thread setter([&] {
    for (int i = 0; i < count; ++i)
      promises[i].set(JobResult::success(Codec<int>::encode(i)));
  });
  int mismatches = 0;
  for (int i = 0; i < count; ++i) {
    JobResult result = futures[i].get();
    if (!result.ok() || Codec<int>::decode(result.value()) != i) ++mismatches;
  }
  setter.join();
  CHECK(mismatches == 0);
}

TEST_CASE("wait_for and wait_until time out while the job is pending, then report ready") {
  OutcomePromise promise;
  JobFuture future = future_of(promise);
  CHECK(future.wait_for(0s) == std::future_status::timeout);
  CHECK(future.wait_for(-5s) == std::future_status::timeout);
  auto before = std::chrono::steady_clock::now();
  CHECK(future.wait_for(20ms) == std::future_status::timeout);
  CHECK(std::chrono::steady_clock::now() - before >= 20ms);
  CHECK(future.wait_until(std::chrono::system_clock::now() - 1h) == std::future_status::timeout);
  CHECK(future.wait_until(std::chrono::steady_clock::now() + 10ms) == std::future_status::timeout);
  promise.set(JobResult::success(Bytes{}));
  // Durations too long for nanoseconds saturate instead of overflowing into the past.
  CHECK(future.wait_for(std::chrono::hours::max()) == std::future_status::ready);
  CHECK(future.wait_until(std::chrono::steady_clock::time_point::max()) ==
        std::future_status::ready);
  future.wait();
  CHECK(future.get().ok());
}

TEST_CASE("a wait_for with a long timeout returns as soon as the outcome is set") {
  OutcomePromise promise;
  JobFuture future = future_of(promise);
  std::thread setter([&] { promise.set(JobResult::failure(failure(ErrorKind::timeout, "t"))); });
  CHECK(future.wait_for(std::chrono::hours(24)) == std::future_status::ready);
  setter.join();
  JobResult result = future.get();
  REQUIRE_FALSE(result.ok());
  CHECK(result.error().kind == ErrorKind::timeout);
}

TEST_CASE("an invalid Future throws future_error(no_state) from get and the waits") {
  JobFuture never_assigned;
  CHECK_FALSE(never_assigned.valid());
  std::error_code code;
  try {
    (void)never_assigned.get();
  } catch (const std::future_error& e) {
    code = e.code();
  }
  CHECK(code == std::make_error_code(std::future_errc::no_state));
  CHECK_THROWS_AS(never_assigned.wait(), std::future_error);
  CHECK_THROWS_AS(never_assigned.wait_for(1ms), std::future_error);
  CHECK_THROWS_AS(never_assigned.wait_until(std::chrono::steady_clock::now()), std::future_error);

  OutcomePromise promise;
  JobFuture consumed = future_of(promise);
  promise.set(JobResult::success(Bytes{}));
  CHECK(consumed.get().ok());
  CHECK_THROWS_AS(consumed.get(), std::future_error);

  OutcomePromise pending;
  JobFuture moved_from = future_of(pending);
  JobFuture moved_to = std::move(moved_from);
  CHECK(moved_to.valid());
  CHECK_FALSE(moved_from.valid());  // NOLINT(bugprone-use-after-move): what a move leaves
}

TEST_CASE("a promise dropped without an outcome fails its Future instead of leaving it waiting") {
  JobFuture future;
  {
    OutcomePromise promise;
    future = future_of(promise);
  }
  JobResult result = future.get();
  REQUIRE_FALSE(result.ok());
  CHECK(result.error().kind == ErrorKind::shutting_down);
  CHECK(result.error().message.find("procpool bug") != std::string::npos);

  OutcomePromise replaced;
  JobFuture of_replaced = future_of(replaced);
  replaced = OutcomePromise();
  CHECK(of_replaced.wait_for(0s) == std::future_status::ready);
  CHECK(of_replaced.get().error().kind == ErrorKind::shutting_down);
}

TEST_CASE("a typed Future decodes the response on get(); an undecodable one is a codec_error") {
  OutcomePromise promise;
  Future<int> typed(future_of(promise));
  promise.set(JobResult::success(Codec<int>::encode(1234)));
  Result<int> value = typed.get();
  REQUIRE(value.ok());
  CHECK(value.value() == 1234);

  OutcomePromise short_reply;
  Future<std::uint64_t> wide(future_of(short_reply));
  short_reply.set(JobResult::success(bytes("abc")));
  Result<std::uint64_t> bad = wide.get();
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().kind == ErrorKind::codec_error);
  CHECK(bad.error().message.find("cannot decode the response") != std::string::npos);

  OutcomePromise failed;
  Future<std::string> failed_typed(future_of(failed));
  failed.set(JobResult::failure(failure(ErrorKind::handler_error, "handler failed: x")));
  Result<std::string> error = failed_typed.get();
  REQUIRE_FALSE(error.ok());
  CHECK(error.error().message == "handler failed: x");
}

TEST_CASE("futures from a real pool read out of order all get their own outcome") {
  Pool pool(test::quiet_options(2));
  std::vector<JobFuture> futures;
  for (int i = 0; i < 200; ++i)
    futures.push_back(pool.submit("echo", bytes(std::to_string(i))));
  for (int i = 199; i >= 0; --i) {
    JobResult result = futures[i].get();
    REQUIRE(result.ok());
    CHECK(text(result.value()) == std::to_string(i));
  }
}
