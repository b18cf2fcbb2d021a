// azure.transcribe end to end: a procpool::Pool whose workers are procpool-azure-worker, talking to
// the loopback mock, with concurrent submitters while workers recycle.
#include <procpool/pool.hpp>
#include <procpool/stats.hpp>

#include <unistd.h>
#include <azure_transcription/job.hpp>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "azure_catch.hpp"
#include "azure_test_helpers.hpp"
#include "mock_server.hpp"
#include "test_support.hpp"

using namespace procpool::azure;
using procpool::azure_mock::Endpoint;
using procpool::azure_mock::Fault;
using procpool::azure_mock::MockServer;
using procpool::azure_test::Has;
using procpool::azure_test::tone_wav;

namespace {

procpool::PoolOptions azure_pool_options(std::size_t workers) {
  procpool::PoolOptions options = procpool::test::quiet_options(workers);
  options.worker_command = {PROCPOOL_AZURE_WORKER};
  options.job_timeout = std::chrono::seconds(60);
  return options;
}

}  // namespace

TEST_CASE("azure.transcribe runs in recycled workers, concurrently, with the right answers",
          "[azure][pool]") {
  MockServer mock;
  procpool::azure_test::point_environment_at(mock);
  const int host = static_cast<int>(::getpid());
  {
    procpool::PoolOptions options = azure_pool_options(3);
    options.recycle.max_jobs = 4;  // workers are replaced while the jobs flow
    procpool::Pool pool(options);

    constexpr int threads = 4;
    constexpr int per_thread = 10;
    std::vector<std::string> failures(threads);
    std::vector<std::thread> submitters;
    for (int t = 0; t < threads; ++t) {
      submitters.emplace_back([&, t] {
        for (int i = 0; i < per_thread; ++i) {
          int seed = t * 100 + i;
          TranscribeRequest r;
          r.audio = tone_wav(i % 5 == 4 ? 61.0 : 1.0 + i % 3, seed);  // some go to fast
          procpool::Result<TranscribeResponse> result = pool.submit<TranscribeJob>(r).get();
          if (!result.ok()) {
            failures[t] += "seed " + std::to_string(seed) + ": " + result.error().message + "\n";
            continue;
          }
          const TranscribeResponse& s = result.value();
          if (s.display_text != procpool::azure_mock::expected_text(r.audio)) {
            failures[t] += "seed " + std::to_string(seed) + ": wrong text " + s.display_text + "\n";
          }
          if ((i % 5 == 4) != (s.api == Api::fast)) failures[t] += "wrong endpoint\n";
        }
      });
    }
    for (auto& s : submitters)
      s.join();
    for (const auto& f : failures)
      CHECK(f.empty());

    procpool::PoolStats stats = pool.stats();
    CHECK(stats.succeeded == threads * per_thread);
    std::uint64_t recycled = 0;
    for (std::uint64_t count : stats.recycles_by_reason)
      recycled += count;
    CHECK(recycled >= 5);  // 40 jobs, 4 per worker
    CHECK(mock.counters().short_audio + mock.counters().fast == threads * per_thread);
  }
  CHECK(procpool::test::zombie_children(host).empty());
  CHECK(procpool::test::shm_entries_for(host).empty());
}

TEST_CASE("faults and bad input come back through the pool as structured errors", "[azure][pool]") {
  MockServer mock;
  procpool::azure_test::point_environment_at(mock);
  procpool::Pool pool(azure_pool_options(1));

  // A 503 is retried inside the worker: the job succeeds on the second attempt.
  mock.push_fault(Endpoint::short_audio, Fault::http(503));
  TranscribeRequest r;
  r.audio = tone_wav(1.0, 42);
  procpool::Result<TranscribeResponse> ok = pool.submit<TranscribeJob>(r).get();
  REQUIRE(ok.ok());
  CHECK(ok.value().attempts == 2);
  CHECK(ok.value().display_text == procpool::azure_mock::expected_text(r.audio));

  // A 400 is not retried; the host recovers Azure's status and code from the job error.
  mock.push_fault(Endpoint::short_audio, Fault::http(400));
  procpool::Result<TranscribeResponse> bad = pool.submit<TranscribeJob>(r).get();
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().kind == procpool::ErrorKind::handler_error);
  auto details = AzureError::from_message(bad.error().message);
  REQUIRE(details);
  CHECK(details->kind == ErrorKind::bad_request);
  CHECK(details->http_status == 400);
  CHECK(details->code == "InvalidArgument");
  CHECK(details->attempts == 1);

  // Invalid audio never reaches the mock.
  auto before = mock.counters().total;
  TranscribeRequest broken;
  broken.audio = tone_wav(1.0);
  broken.audio.resize(broken.audio.size() / 2);
  procpool::Result<TranscribeResponse> invalid = pool.submit<TranscribeJob>(broken).get();
  REQUIRE_FALSE(invalid.ok());
  auto invalid_details = AzureError::from_message(invalid.error().message);
  REQUIRE(invalid_details);
  CHECK(invalid_details->kind == ErrorKind::invalid_audio);
  CHECK_THAT(invalid_details->message, Has("truncated"));
  CHECK(mock.counters().total == before);

  // Nothing the worker reports quotes the key.
  mock.push_fault(Endpoint::short_audio, Fault::echo_key());
  procpool::Result<TranscribeResponse> echoed = pool.submit<TranscribeJob>(r).get();
  REQUIRE_FALSE(echoed.ok());
  CHECK(echoed.error().message.find(mock.options().key) == std::string::npos);
  CHECK(echoed.error().worker_stderr.find(mock.options().key) == std::string::npos);
}
