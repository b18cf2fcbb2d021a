// Each recycle policy, end to end with real worker processes and real (touched) memory: the worker
// is replaced when, and only when, its policy says so, the reason is recorded, and no job is lost.
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <mutex>
#include <procpool/procpool.hpp>
#include <set>

#include "catch.hpp"
#include "test_support.hpp"

using namespace procpool;
using namespace std::chrono_literals;

namespace {

constexpr std::uint64_t MiB = std::uint64_t{1} << 20;

/// Records every PoolEvent for later inspection.
struct EventLog {
  std::mutex mutex;
  std::vector<PoolEvent> events;

  EventCallback callback() {
    return [this](const PoolEvent& e) {
      std::lock_guard lock(mutex);
      events.push_back(e);
    };
  }
  std::vector<PoolEvent> snapshot() {
    std::lock_guard lock(mutex);
    return events;
  }
  std::size_t count(EventType type) {
    std::lock_guard lock(mutex);
    return static_cast<std::size_t>(std::count_if(
        events.begin(), events.end(), [&](const PoolEvent& e) { return e.type == type; }));
  }
};

int pid_of(Pool& pool, const char* job = "pid") {
  JobResult r = pool.submit(job, Bytes{}).get();
  REQUIRE(r.ok());
  return std::stoi(test::text(r.value()));
}

Bytes mebibytes(std::uint32_t n) {
  return test::encode_value(n);
}

/// A fresh worker's memory in this build (sanitizers make it much larger), read from a pool.
std::uint64_t fresh_worker_rss() {
  Pool pool(test::quiet_options(1));
  REQUIRE(pool.submit("echo", Bytes{}).get().ok());
  return pool.stats().workers.at(0).rss_bytes;
}

/// RSS a worker gains for each MiB a job touches, in this build. 1 normally; under ThreadSanitizer
/// every byte a job touches also touches shadow memory, so it is measured once from a real worker,
/// and the memory limits below scale with it: they still fall between the same two jobs, and a
/// worker whose memory is not measured or not acted on still fails them.
double rss_per_touched_mib() {
#if defined(PROCPOOL_TEST_TSAN)
  static const double factor = [] {
    constexpr std::uint32_t leaked = 32;
    Pool pool(test::quiet_options(1));
    REQUIRE(pool.submit("echo", Bytes{}).get().ok());
    auto before = static_cast<double>(pool.stats().workers.at(0).rss_bytes);
    REQUIRE(pool.submit("leak_mb", mebibytes(leaked)).get().ok());
    auto after = static_cast<double>(pool.stats().workers.at(0).rss_bytes);
    return (after - before) / static_cast<double>(leaked * MiB);
  }();
  INFO("RSS per touched MiB under ThreadSanitizer: " << factor);
  REQUIRE(factor >= 1.0);  // less would mean the leak was not measured
  REQUIRE(factor <= 16.0);
  return factor;
#else
  return 1.0;
#endif
}

/// The RSS that `n` MiB touched by a job adds to a worker in this build.
std::uint64_t touched(double n) {
  return static_cast<std::uint64_t>(n * rss_per_touched_mib() * static_cast<double>(MiB));
}

JobStats job_stats_of(const PoolStats& stats, const std::string& name) {
  auto it = std::find_if(stats.jobs.begin(), stats.jobs.end(),
                         [&](const JobStats& j) { return j.name == name; });
  REQUIRE(it != stats.jobs.end());
  return *it;
}

bool all_idle(Pool& pool, std::size_t workers) {
  auto s = pool.stats();
  if (s.workers.size() != workers) return false;
  return std::all_of(s.workers.begin(), s.workers.end(),
                     [](const WorkerStats& w) { return w.state == WorkerState::idle; });
}

}  // namespace

TEST_CASE("max_jobs replaces a worker after exactly that many jobs") {
  PoolOptions options = test::quiet_options(1);
  options.recycle.max_jobs = 3;
  Pool pool(options);
  std::vector<int> pids;
  for (int i = 0; i < 7; ++i)
    pids.push_back(pid_of(pool));
  CHECK(pids[0] == pids[1]);
  CHECK(pids[1] == pids[2]);
  CHECK(pids[3] != pids[2]);
  CHECK(pids[3] == pids[5]);
  CHECK(pids[6] != pids[5]);
  CHECK(test::eventually([&] { return pool.stats().recycles(RecycleReason::max_jobs) == 2; }));
  CHECK(pool.stats().succeeded == 7);
  REQUIRE(test::eventually([&] { return all_idle(pool, 1); }));
  CHECK(pool.stats().workers[0].predecessor_reason == RecycleReason::max_jobs);
  CHECK(pool.stats().health == PoolHealth::healthy);  // planned recycles are not a storm
}

TEST_CASE("a worker given its last job (max_jobs) is replaced while that job still runs") {
  PoolOptions options = test::quiet_options(1);
  options.recycle.max_jobs = 1;
  // No memory sample while the job runs (which would also look at the policy): the decision must
  // come from the job being given.
  options.recycle.memory_sample_interval = std::chrono::hours(1);
  Pool pool(options);
  REQUIRE(test::eventually([&] { return all_idle(pool, 1); }));
  test::Gate gate;
  JobFuture held = pool.submit("wait_fifo", gate.payload());
  // The replacement comes up beside the retiring worker, before the job ends.
  REQUIRE(test::eventually([&] {
    PoolStats stats = pool.stats();
    if (stats.workers.size() != 2) return false;
    bool retiring_busy = false, fresh_idle = false;
    for (const WorkerStats& w : stats.workers) {
      retiring_busy |=
          w.state == WorkerState::retiring && w.leaving_reason == RecycleReason::max_jobs;
      fresh_idle |= w.state == WorkerState::idle && w.jobs_done == 0;
    }
    return retiring_busy && fresh_idle;
  }));
  CHECK(held.wait_for(std::chrono::milliseconds(0)) == std::future_status::timeout);
  gate.release();
  CHECK(held.get().ok());
  CHECK(test::eventually([&] { return all_idle(pool, 1); }));
  CHECK(pool.stats().recycles(RecycleReason::max_jobs) == 1);
}

TEST_CASE("a retiring worker's replacement is spawned before it leaves") {
  EventLog log;
  PoolOptions options = test::quiet_options(2);
  options.recycle.max_jobs = 1;
  options.on_event = log.callback();
  Pool pool(options);
  for (int i = 0; i < 20; ++i)
    REQUIRE(pool.submit("echo", test::bytes("x")).get().ok());
  REQUIRE(test::eventually([&] { return all_idle(pool, 2); }));
  auto events = log.snapshot();
  // For every worker that retired, a replacement (spawned with reason max_jobs) was started before
  // that worker's exit event.
  std::size_t retirements = 0;
  for (std::size_t i = 0; i < events.size(); ++i) {
    if (events[i].type != EventType::retiring) continue;
    ++retirements;
    auto exit = std::find_if(
        events.begin() + static_cast<std::ptrdiff_t>(i), events.end(), [&](const PoolEvent& e) {
          return e.type == EventType::exited && e.worker_id == events[i].worker_id;
        });
    REQUIRE(exit != events.end());
    bool replaced_before =
        std::any_of(events.begin() + static_cast<std::ptrdiff_t>(i), exit, [](const PoolEvent& e) {
          return e.type == EventType::spawned && e.reason == RecycleReason::max_jobs;
        });
    CHECK(replaced_before);
  }
  CHECK(retirements == 20);
  CHECK(log.count(EventType::degraded) == 0);
}

TEST_CASE("max_lifetime replaces a worker once it has lived its time") {
  PoolOptions options = test::quiet_options(1);
  options.recycle.max_lifetime = 150ms;
  Pool pool(options);
  int first = pid_of(pool);
  REQUIRE(
      test::eventually([&] { return pool.stats().recycles(RecycleReason::max_lifetime) >= 1; }));
  REQUIRE(test::eventually([&] { return all_idle(pool, 1); }));
  CHECK(pid_of(pool) != first);
  CHECK(pool.stats().workers[0].predecessor_reason == RecycleReason::max_lifetime);
}

TEST_CASE("idle_timeout recycles an idle worker into a fresh one in a fixed pool") {
  PoolOptions options = test::quiet_options(1);
  options.recycle.idle_timeout = 100ms;
  Pool pool(options);
  int first = pid_of(pool);
  REQUIRE(
      test::eventually([&] { return pool.stats().recycles(RecycleReason::idle_timeout) >= 1; }));
  REQUIRE(test::eventually([&] { return all_idle(pool, 1); }));
  CHECK(pid_of(pool) != first);
}

TEST_CASE("with min_workers, idle workers scale down and queued work scales up again") {
  PoolOptions options = test::quiet_options(3);
  options.min_workers = 1;
  options.recycle.idle_timeout = 100ms;
  Pool pool(options);
  CHECK(pool.stats().min_workers == 1);
  CHECK(pool.stats().max_workers == 3);
  // Queue depth brings up more workers: three jobs held running need three workers, however
  // slowly they start (a job that only slept could end before the third worker was up).
  std::vector<JobFuture> futures;
  test::Gate gates[3];
  for (auto& gate : gates)
    futures.push_back(pool.submit("wait_fifo", gate.payload()));
  REQUIRE(test::eventually([&] { return pool.stats().in_flight == 3; }));
  CHECK(pool.stats().workers.size() == 3);
  for (auto& gate : gates)
    gate.release();
  for (auto& f : futures)
    CHECK(f.get().ok());
  // Idle ones go away, down to min_workers, and are not replaced.
  REQUIRE(test::eventually([&] { return all_idle(pool, 1); }));
  CHECK(pool.stats().recycles(RecycleReason::scale_down) == 2);
  // The last one is kept at min_workers: its idle timeout recycles it instead.
  REQUIRE(
      test::eventually([&] { return pool.stats().recycles(RecycleReason::idle_timeout) >= 1; }));
  CHECK(pool.stats().workers.size() <= 1 + 1);
}

TEST_CASE("a worker over the soft limit is retired after its job; the job succeeds") {
  std::uint64_t base = fresh_worker_rss();
  PoolOptions options = test::quiet_options(1);
  options.recycle.memory_soft_limit = base + touched(48);
  Pool pool(options);
  std::set<std::string> pids;
  for (int i = 0; i < 7; ++i) {
    JobResult r = pool.submit("leak_mb", mebibytes(20)).get();
    REQUIRE(r.ok());
    pids.insert(test::text(r.value()).substr(0, test::text(r.value()).find(' ')));
  }
  // 20 MiB per job over a 48 MiB allowance: a worker goes over on its third job and is replaced
  // after it, so jobs 1-3, 4-6 and 7 ran in three workers.
  CHECK(pids.size() == 3);
  CHECK(test::eventually(
      [&] { return pool.stats().recycles(RecycleReason::memory_soft_limit) == 2; }));
}

TEST_CASE("a job that balloons past the hard limit is killed mid-run and fails with memory_limit") {
  std::uint64_t base = fresh_worker_rss();
  PoolOptions options = test::quiet_options(1);
  options.recycle.memory_hard_limit = base + touched(96);
  options.recycle.memory_sample_interval = 20ms;
  Pool pool(options);
  JobResult r = pool.submit("balloon_mb", mebibytes(2000)).get();
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().kind == ErrorKind::memory_limit);
  CHECK(r.error().message.find("hard limit") != std::string::npos);
  CHECK(pool.stats().recycles(RecycleReason::memory_hard_limit) == 1);
  CHECK(pool.submit("echo", test::bytes("after")).get().ok());

  // Memory kills are retried for idempotent jobs (and fail again here: it always balloons).
  SubmitOptions retry;
  retry.idempotent = true;
  retry.max_attempts = 2;
  JobResult retried = pool.submit("balloon_mb", mebibytes(2000), retry).get();
  REQUIRE_FALSE(retried.ok());
  CHECK(retried.error().kind == ErrorKind::memory_limit);
  CHECK(retried.error().attempts == 2);
}

TEST_CASE("growth over a worker's own baseline retires it as a leak") {
  PoolOptions options = test::quiet_options(1);
  options.recycle.memory_growth_limit = touched(50);
  options.recycle.baseline_after_jobs = 1;
  Pool pool(options);
  std::vector<std::string> results;
  for (int i = 0; i < 5; ++i) {
    JobResult r = pool.submit("leak_mb", mebibytes(20)).get();
    REQUIRE(r.ok());
    results.push_back(test::text(r.value()));
  }
  // Baseline after job 1 (20 MiB leaked); job 2: +20, job 3: +40, job 4: +60 > 50: retired.
  CHECK(test::eventually([&] { return pool.stats().recycles(RecycleReason::memory_growth) == 1; }));
  CHECK(results[4].substr(0, results[4].find(' ')) != results[0].substr(0, results[0].find(' ')));
}

TEST_CASE(
    "a worker already above the soft limit at start-up is reported once, not recycled in a loop") {
  EventLog log;
  PoolOptions options = test::quiet_options(2);
  options.recycle.memory_soft_limit = 1 * MiB;  // below any real process
  options.on_event = log.callback();
  Pool pool(options);
  for (int i = 0; i < 10; ++i)
    REQUIRE(pool.submit("echo", test::bytes("x")).get().ok());
  PoolStats stats = pool.stats();
  CHECK(stats.recycles(RecycleReason::memory_soft_limit) == 0);
  CHECK(stats.workers_started == 2);
  CHECK(log.count(EventType::above_soft_limit_at_start) == 1);
  // It grows past its start-up size: still kept, the hard limit (unset here) is what would apply.
  CHECK(pool.submit("leak_mb", mebibytes(8)).get().ok());
  CHECK(pool.stats().recycles(RecycleReason::memory_soft_limit) == 0);
}

TEST_CASE("no more than max_concurrent_recycles workers retire at once") {
  EventLog log;
  PoolOptions options = test::quiet_options(4);
  options.recycle.max_lifetime = 100ms;
  options.recycle.max_concurrent_recycles = 1;
  options.on_event = log.callback();
  Pool pool(options);
  REQUIRE(
      test::eventually([&] { return pool.stats().recycles(RecycleReason::max_lifetime) >= 8; }));
  pool.shutdown(0ms);
  int leaving = 0, most = 0;
  for (const PoolEvent& e : log.snapshot()) {
    if (e.type == EventType::retiring) most = std::max(most, ++leaving);
    if (e.type == EventType::exited && e.reason == RecycleReason::max_lifetime) --leaving;
  }
  CHECK(most == 1);
}

TEST_CASE("per-job memory attribution shows which job leaks and by how much") {
  PoolOptions options = test::quiet_options(1);
  Pool pool(options);
  for (int i = 0; i < 4; ++i) {
    REQUIRE(pool.submit("leak_mb", mebibytes(16)).get().ok());
    REQUIRE(pool.submit("echo", test::bytes("clean")).get().ok());
  }
  PoolStats stats = pool.stats();
  JobStats leaky = job_stats_of(stats, "leak_mb");
  JobStats clean = job_stats_of(stats, "echo");
  CHECK(leaky.completed == 4);
  CHECK(leaky.memory_delta_mean_bytes > static_cast<double>(touched(14)));
  CHECK(leaky.memory_delta_mean_bytes < static_cast<double>(touched(20)));
  CHECK(std::abs(clean.memory_delta_mean_bytes) < static_cast<double>(touched(2)));
  CHECK(leaky.latency_p50_ms > 0);
  CHECK(leaky.latency_p99_ms >= leaky.latency_p50_ms);
  // The worker's own leak rate, measured from its baseline after the first job.
  const WorkerStats& w = stats.workers.at(0);
  REQUIRE(w.baseline_bytes.has_value());
  CHECK(w.growth_bytes_per_job > static_cast<double>(touched(6)));  // 16 MiB every other job
  CHECK(w.growth_bytes_per_job < static_cast<double>(touched(10)));
  CHECK(w.growth_bytes_per_minute > 0);
}

TEST_CASE("jobs that share one memory reading are each given their share of the change") {
  PoolOptions options = test::quiet_options(1);
  // No reading after a job but those the rules require: after the baseline job, and before a job
  // of another name.
  options.recycle.memory_sample_interval = 1h;
  options.recycle.memory_read_min_interval = 1h;
  Pool pool(options);
  REQUIRE(pool.submit("echo", test::bytes("baseline")).get().ok());
  const std::uint64_t before = pool.stats().workers.at(0).rss_bytes;
  for (int i = 0; i < 3; ++i)
    REQUIRE(pool.submit("leak_mb", mebibytes(16)).get().ok());
  CHECK(pool.stats().workers.at(0).rss_bytes == before);  // not read after each
  REQUIRE(pool.submit("echo", test::bytes("clean")).get().ok());
  PoolStats stats = pool.stats();
  CHECK(stats.workers.at(0).rss_bytes > before + touched(46));
  // 48 MiB over the three jobs that reading saw, not over the echo that awaits the next one.
  CHECK(stats.workers.at(0).growth_bytes_per_job > static_cast<double>(touched(14)));
  CHECK(stats.workers.at(0).growth_bytes_per_job < static_cast<double>(touched(20)));
  JobStats leaky = job_stats_of(stats, "leak_mb");
  CHECK(leaky.completed == 3);
  CHECK(leaky.memory_delta_mean_bytes > static_cast<double>(touched(14)));
  CHECK(leaky.memory_delta_mean_bytes < static_cast<double>(touched(20)));
  CHECK(leaky.memory_delta_max_bytes > static_cast<std::int64_t>(touched(14)));
  CHECK(leaky.memory_delta_max_bytes < static_cast<std::int64_t>(touched(20)));
  CHECK(std::abs(job_stats_of(stats, "echo").memory_delta_mean_bytes) <
        static_cast<double>(touched(2)));
}

TEST_CASE("the baseline is a reading after the warm-up jobs, even ones that share readings") {
  PoolOptions options = test::quiet_options(1);
  options.recycle.memory_sample_interval = 1h;
  options.recycle.memory_read_min_interval = 1h;
  options.recycle.baseline_after_jobs = 1;
  Pool pool(options);
  REQUIRE(pool.submit("leak_mb", mebibytes(16)).get().ok());
  // Had the warm-up job gone unread, this job (of another name) would take the reading now.
  REQUIRE(pool.submit("echo", test::bytes("after the warm-up")).get().ok());
  const WorkerStats w = pool.stats().workers.at(0);
  REQUIRE(w.baseline_bytes.has_value());
  CHECK(*w.baseline_bytes + touched(2) > w.rss_bytes);  // the 16 MiB are in the baseline
}

TEST_CASE("a retiring worker's last job is read before it leaves") {
  PoolOptions options = test::quiet_options(1);
  options.recycle.memory_sample_interval = 1h;
  options.recycle.memory_read_min_interval = 1h;
  options.recycle.max_jobs = 2;
  Pool pool(options);
  REQUIRE(pool.submit("echo", test::bytes("baseline")).get().ok());
  REQUIRE(pool.submit("leak_mb", mebibytes(16)).get().ok());  // its last job (max_jobs)
  CHECK(job_stats_of(pool.stats(), "leak_mb").memory_delta_mean_bytes >
        static_cast<double>(touched(14)));
}

TEST_CASE("the change of jobs sent ahead is given to no job, not to the next one") {
  PoolOptions options = test::quiet_options(1);
  options.recycle.memory_sample_interval = 1h;
  options.recycle.memory_read_min_interval = 1h;
  options.prefetch.when_jobs_take_under = 1h;
  options.prefetch.max_work_ahead = 1h;
  Pool pool(options);
  REQUIRE(pool.submit("echo", test::bytes("baseline")).get().ok());
  // Submitted together, the three after the first are sent ahead to the one worker.
  std::vector<JobFuture> leaks;
  for (int i = 0; i < 4; ++i)
    leaks.push_back(pool.submit("leak_mb", mebibytes(8)));
  for (JobFuture& f : leaks)
    REQUIRE(f.get().ok());
  REQUIRE(pool.submit("echo", test::bytes("clean")).get().ok());
  REQUIRE(pool.submit("pid", Bytes{}).get().ok());  // another name: reads after the echo
  CHECK(std::abs(job_stats_of(pool.stats(), "echo").memory_delta_mean_bytes) <
        static_cast<double>(touched(2)));
}

TEST_CASE("an idle worker whose last job went unread is read by the periodic sample") {
  PoolOptions options = test::quiet_options(1);
  options.recycle.memory_sample_interval = 200ms;
  options.recycle.memory_read_min_interval = 200ms;
  options.recycle.memory_growth_limit = touched(24);
  Pool pool(options);
  REQUIRE(pool.submit("echo", test::bytes("baseline")).get().ok());
  REQUIRE(pool.submit("leak_mb", mebibytes(32)).get().ok());
  // Nothing else is submitted: only the sample can see the growth, retire the worker for it, and
  // give the job its change.
  CHECK(test::eventually([&] { return pool.stats().recycles(RecycleReason::memory_growth) == 1; }));
  CHECK(job_stats_of(pool.stats(), "leak_mb").memory_delta_mean_bytes >
        static_cast<double>(touched(30)));
}

TEST_CASE("PSS and USS can be chosen as the memory metric") {
  for (MemoryMetric metric : {MemoryMetric::pss, MemoryMetric::uss}) {
    PoolOptions options = test::quiet_options(1);
    options.recycle.memory_metric = metric;
    Pool pool(options);
    REQUIRE(pool.submit("leak_mb", mebibytes(8)).get().ok());
    const WorkerStats w = pool.stats().workers.at(0);
    CHECK(w.memory_bytes > 8 * MiB);
    CHECK(w.memory_bytes < w.rss_bytes);  // shared library pages are not (fully) counted
  }
}

#if !defined(PROCPOOL_TEST_SANITIZED)  // sanitizers reserve terabytes of address space
TEST_CASE("address_space_limit caps a worker's allocations") {
  PoolOptions options = test::quiet_options(1);
  options.recycle.address_space_limit = 512 * MiB;
  Pool pool(options);
  CHECK(pool.submit("alloc_mb", mebibytes(64)).get().ok());
  JobResult r = pool.submit("alloc_mb", mebibytes(1024)).get();
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().kind == ErrorKind::handler_error);
  CHECK(r.error().message.find("bad_alloc") != std::string::npos);
}
#endif

TEST_CASE("events report the life of workers with reasons and exit status") {
  EventLog log;
  PoolOptions options = test::quiet_options(1);
  options.on_event = log.callback();
  {
    Pool pool(options);
    REQUIRE_FALSE(pool.submit("sigkill", Bytes{}).get().ok());
    REQUIRE(pool.submit("echo", Bytes{}).get().ok());
  }
  auto events = log.snapshot();
  auto first = [&](EventType type) {
    return std::find_if(events.begin(), events.end(),
                        [&](const PoolEvent& e) { return e.type == type; });
  };
  REQUIRE(first(EventType::spawned) != events.end());
  REQUIRE(first(EventType::ready) != events.end());
  auto failed = first(EventType::job_failed);
  REQUIRE(failed != events.end());
  CHECK(failed->job_name == "sigkill");
  CHECK(failed->error == ErrorKind::worker_crashed);
  auto exited = first(EventType::exited);
  REQUIRE(exited != events.end());
  CHECK(exited->reason == RecycleReason::crash);
  CHECK(exited->signal == SIGKILL);
  auto replacement = std::find_if(events.begin(), events.end(), [](const PoolEvent& e) {
    return e.type == EventType::spawned && e.reason == RecycleReason::crash;
  });
  CHECK(replacement != events.end());
  CHECK(log.count(EventType::exited) == 2);  // the crash, and the replacement at shutdown
}

TEST_CASE("a pool degraded by failing starts heals itself when a worker starts cleanly") {
  // A worker "binary" that fails its first three starts, then becomes the real test worker.
  auto dir =
      std::filesystem::temp_directory_path() / ("procpool-storm-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto counter = dir / "starts";
  auto script = dir / "flaky-worker.sh";
  {
    std::ofstream out(script);
    out << "#!/bin/sh\n"
        << "n=$(cat '" << counter.string() << "' 2>/dev/null || echo 0)\n"
        << "echo $((n + 1)) > '" << counter.string() << "'\n"
        << "if [ \"$n\" -lt 3 ]; then echo 'flaky worker: failing on purpose' >&2; exit 1; fi\n"
        << "exec '" << test::test_worker_path() << "' \"$@\"\n";
  }
  std::filesystem::permissions(script, std::filesystem::perms::owner_all);
  EventLog log;
  PoolOptions options = test::quiet_options(1);
  options.worker_command = {script.string()};
  options.restart_storm_threshold = 2;
  options.restart_backoff_initial = 5ms;
  options.restart_backoff_max = 20ms;
  options.on_event = log.callback();
  Pool pool(options);
  REQUIRE(test::eventually([&] { return log.count(EventType::degraded) == 1; }));
  REQUIRE(test::eventually([&] { return pool.stats().health == PoolHealth::healthy; }));
  CHECK(log.count(EventType::recovered) == 1);
  JobResult r = pool.submit("echo", test::bytes("healed")).get();
  REQUIRE(r.ok());
  CHECK(test::text(r.value()) == "healed");
  CHECK(pool.stats().start_failures == 3);
  CHECK(pool.stats().recycles(RecycleReason::start_failure) == 3);
  pool.shutdown(0ms);
  std::filesystem::remove_all(dir);
}

TEST_CASE("a worker retiring mid-job for the soft limit is still killed at the hard limit") {
  std::uint64_t base = fresh_worker_rss();
  PoolOptions options = test::quiet_options(1);
  options.recycle.memory_soft_limit = base + touched(32);
  options.recycle.memory_hard_limit = base + touched(160);
  options.recycle.memory_sample_interval = 20ms;
  Pool pool(options);
  JobResult r = pool.submit("balloon_mb", mebibytes(2000)).get();  // grows past both, then hangs
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().kind == ErrorKind::memory_limit);
  CHECK(pool.stats().recycles(RecycleReason::memory_hard_limit) == 1);
}

TEST_CASE("a retiring worker that dies during its last job is recorded as a crash") {
  std::uint64_t base = fresh_worker_rss();
  PoolOptions options = test::quiet_options(1);
  options.recycle.memory_soft_limit = base + touched(16);
  options.recycle.memory_sample_interval = 20ms;
  Pool pool(options);
  JobResult r = pool.submit("leak_then_crash", mebibytes(48)).get();
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().kind == ErrorKind::worker_crashed);
  CHECK(r.error().signal == SIGKILL);
  PoolStats stats = pool.stats();
  CHECK(stats.recycles(RecycleReason::crash) == 1);
  CHECK(stats.recycles(RecycleReason::memory_soft_limit) == 0);
  CHECK(pool.submit("echo", test::bytes("next")).get().ok());
}

TEST_CASE("a hard limit below a fresh worker's size backs off and degrades instead of looping") {
  EventLog log;
  PoolOptions options = test::quiet_options(1);
  options.recycle.memory_hard_limit = 1 * MiB;  // below any real process
  options.restart_storm_threshold = 3;
  options.restart_backoff_initial = 5ms;
  options.restart_backoff_max = 50ms;
  options.on_event = log.callback();
  Pool pool(options);
  JobFuture job = pool.submit("echo", test::bytes("never runs"));
  JobResult r = job.get();
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().kind == ErrorKind::pool_degraded);
  CHECK(log.count(EventType::degraded) >= 1);
  CHECK(pool.stats().recycles(RecycleReason::memory_hard_limit) >= 3);
}
