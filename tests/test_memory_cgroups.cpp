// Per-worker memory cgroups (PoolOptions::worker_cgroups): each worker in a cgroup of
// its own that the kernel caps, so that a job crossing the cap ends as memory_limit whatever the
// sampling interval, with no other worker touched; nothing left behind after the pool, and what
// dead pools left swept at start. These run on this machine's real memory controller (cgroup v1
// here; the v2 files are tested in test_cgroup_platform) as root, and skip, saying why, elsewhere.
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <procpool/procpool.hpp>
#include <string>
#include <vector>

#include "catch.hpp"
#include "test_cgroup.hpp"
#include "test_support.hpp"

using namespace procpool;
using procpool::test::LogLines;
using procpool::test::TestCgroup;
using procpool::test::text;

namespace {

constexpr std::uint64_t MiB = std::uint64_t{1} << 20;

std::vector<std::string> subdirectories(const std::string& directory) {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(directory)) {
    if (entry.is_directory()) names.push_back(entry.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

std::vector<int> pids_in(const std::string& cgroup) {
  std::vector<int> pids;
  std::ifstream in(cgroup + "/cgroup.procs");
  for (int pid; in >> pid;)
    pids.push_back(pid);
  return pids;
}

std::uint64_t pid_namespace() {
  struct stat st {};
  REQUIRE(::stat("/proc/self/ns/pid", &st) == 0);
  return st.st_ino;
}

/// The children of this process started as a fork server (forked workers are this process's
/// children too, with the same command line: those in `workers` are left out).
std::vector<int> fork_servers(const std::vector<WorkerStats>& workers) {
  std::vector<int> servers;
  for (int pid : procpool::test::child_pids(::getpid())) {
    if (std::any_of(workers.begin(), workers.end(), [&](const auto& w) { return w.pid == pid; })) {
      continue;
    }
    std::ifstream in("/proc/" + std::to_string(pid) + "/cmdline");
    std::string cmdline((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (cmdline.find("--procpool-fork-server") != std::string::npos) servers.push_back(pid);
  }
  return servers;
}

/// A pid no process has: a child that exited and was reaped.
int dead_pid() {
  pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  ::waitpid(child, nullptr, 0);
  return child;
}

/// A parent cgroup for a test's pools, or a reason to skip.
std::unique_ptr<TestCgroup> parent_cgroup(std::uint64_t limit, std::string& why_not) {
  return TestCgroup::make(limit, why_not);
}

}  // namespace

TEST_CASE("a job crossing its worker's cap ends as memory_limit; its sibling's job completes") {
#ifdef PROCPOOL_TEST_TSAN
  PROCPOOL_SKIP("ThreadSanitizer's shadow memory does not fit a worker in 256 MiB");
#endif
  for (StartMode mode : {StartMode::exec, StartMode::fork_server}) {
    INFO("start mode " << (mode == StartMode::exec ? "exec" : "fork_server"));
    std::string why_not;
    auto parent = parent_cgroup(2048 * MiB, why_not);
    if (!parent) PROCPOOL_SKIP(why_not);
    PoolOptions options = procpool::test::quiet_options(2);
    options.start_mode = mode;
    options.worker_cgroups.enabled = true;
    options.worker_cgroups.max_bytes = 256 * MiB;
    options.worker_cgroups.parent = parent->directory();
    options.worker_cgroups.required = true;
    // Only the kernel can stop the job in time: the first sample would come after 10 s.
    options.recycle.memory_sample_interval = std::chrono::seconds(10);
    options.recycle.memory_hard_limit = 512 * MiB;
    {
      Pool pool(options);
      REQUIRE(procpool::test::settled(pool, 2));
      PoolStats stats = pool.stats();
      CHECK(stats.memory.enforcement ==
            (parent->v2() ? MemoryEnforcement::cgroup_v2 : MemoryEnforcement::cgroup_v1));
      CHECK(stats.memory.worker_cap_bytes == 256 * MiB);
      const std::string pool_dir = stats.memory.worker_cgroups;
      CHECK(pool_dir.rfind(parent->directory() + "/procpool-", 0) == 0);
      // Each worker runs in a cgroup of its own; the fork server that forked it in none of them
      // (its memory is not a worker's, and it must outlive any worker's cgroup).
      const std::vector<int> servers = fork_servers(stats.workers);
      CHECK(servers.size() == (mode == StartMode::fork_server ? 1u : 0u));
      for (const WorkerStats& worker : stats.workers) {
        std::vector<int> pids = pids_in(pool_dir + "/worker-" + std::to_string(worker.id));
        CHECK(std::find(pids.begin(), pids.end(), worker.pid) != pids.end());
        for (int server : servers)
          CHECK(std::find(pids.begin(), pids.end(), server) == pids.end());
      }

      procpool::test::Gate gate;
      JobFuture sibling = pool.submit("wait_fifo", gate.payload());
      REQUIRE(procpool::test::eventually([&] { return pool.stats().in_flight == 1; }));
      int sibling_pid = 0;
      for (const WorkerStats& worker : pool.stats().workers) {
        if (worker.current_job) sibling_pid = worker.pid;
      }
      JobResult big = pool.submit("grab_mb", procpool::test::encode_value(1024u)).get();
      REQUIRE_FALSE(big.ok());
      CHECK(big.error().kind == ErrorKind::memory_limit);
      CHECK(big.error().message.find("the kernel's OOM killer ended worker (pid ") !=
            std::string::npos);
      CHECK(big.error().message.find("while it ran 'grab_mb': its memory cgroup " + pool_dir +
                                     "/worker-") != std::string::npos);
      CHECK(big.error().message.find("reached its cap of 256.0 MiB") != std::string::npos);
      // The sibling and its job were not touched.
      gate.release();
      JobResult sibling_result = sibling.get();
      CHECK(sibling_result.ok());
      REQUIRE(procpool::test::eventually([&] { return pool.stats().workers_exited == 1; }));
      stats = pool.stats();
      CHECK(stats.recycles(RecycleReason::oom_kill) == 1);
      CHECK(stats.recycles(RecycleReason::memory_hard_limit) == 0);
      CHECK(std::any_of(stats.workers.begin(), stats.workers.end(),
                        [&](const WorkerStats& w) { return w.pid == sibling_pid; }));
      // An idempotent job is retried on a fresh worker, as after any memory kill.
      SubmitOptions twice;
      twice.idempotent = true;
      twice.max_attempts = 2;
      JobResult retried =
          pool.submit("grab_mb_first_attempt", procpool::test::encode_value(1024u), twice).get();
      REQUIRE(retried.ok());
      CHECK(text(retried.value()) == "attempt 2");
    }
    // Nothing left: every worker's cgroup and the pool's are gone with the pool.
    CHECK(subdirectories(parent->directory()).empty());
  }
}

TEST_CASE("the next worker's cgroup is made ahead, capped, and the next worker starts in it") {
  std::string why_not;
  auto parent = parent_cgroup(0, why_not);
  if (!parent) PROCPOOL_SKIP(why_not);
  PoolOptions options = procpool::test::quiet_options(1);
  options.worker_cgroups = {true, 256 * MiB, 0, parent->directory(), true};
  options.recycle.max_jobs = 1;
  {
    Pool pool(options);
    REQUIRE(procpool::test::settled(pool, 1));
    PoolStats stats = pool.stats();
    const std::string pool_dir = stats.memory.worker_cgroups;
    const std::uint64_t first = stats.workers.at(0).id;
    // While the pool waits for work, the next worker's cgroup is made (off a recycle's path).
    const std::string next = "worker-" + std::to_string(first + 1);
    REQUIRE(procpool::test::eventually([&] {
      std::vector<std::string> dirs = subdirectories(pool_dir);
      return std::find(dirs.begin(), dirs.end(), next) != dirs.end();
    }));
    std::ifstream limit(pool_dir + "/" + next +
                        (parent->v2() ? "/memory.max" : "/memory.limit_in_bytes"));
    std::uint64_t cap = 0;
    limit >> cap;
    CHECK(cap == 256 * MiB);
    CHECK(pids_in(pool_dir + "/" + next).empty());
    // The first job retires the first worker (max_jobs = 1); its replacement starts in that one.
    REQUIRE(pool.submit("echo", Bytes{}).get().ok());
    REQUIRE(procpool::test::eventually([&] {
      PoolStats now = pool.stats();
      return now.workers.size() == 1 && now.workers[0].id == first + 1 &&
             now.workers[0].state == WorkerState::idle;
    }));
    const int replacement = pool.stats().workers.at(0).pid;
    std::vector<int> pids = pids_in(pool_dir + "/" + next);
    CHECK(std::find(pids.begin(), pids.end(), replacement) != pids.end());
  }
  // The one made ahead for a worker that never came is removed with the pool too.
  CHECK(subdirectories(parent->directory()).empty());
}

TEST_CASE(
    "what a job started in its worker's cgroup dies with the worker, even outside its group") {
  std::string why_not;
  auto parent = parent_cgroup(0, why_not);
  if (!parent) PROCPOOL_SKIP(why_not);
  PoolOptions options = procpool::test::quiet_options(1);
  options.worker_cgroups = {true, 256 * MiB, 0, parent->directory(), true};
  int escaped = 0;
  {
    Pool pool(options);
    JobResult result = pool.submit("spawn_escaped_grandchild", Bytes{}).get();
    REQUIRE(result.ok());
    escaped = std::stoi(text(result.value()));
    CHECK(procpool::test::process_alive(escaped));
  }
  // The grandchild left the worker's process group (its guard could not reach it) but not its
  // cgroup: killed when the cgroup was removed.
  CHECK(procpool::test::eventually([&] { return !procpool::test::process_alive(escaped); }));
  CHECK(subdirectories(parent->directory()).empty());
}

TEST_CASE("the cgroups of a pool whose host died are swept when a pool starts; others are not") {
  std::string why_not;
  auto parent = parent_cgroup(0, why_not);
  if (!parent) PROCPOOL_SKIP(why_not);
  const std::string ns = std::to_string(pid_namespace());
  const std::string stale = "procpool-" + ns + "-" + std::to_string(dead_pid()) + "-1";
  const std::string live = "procpool-" + ns + "-" + std::to_string(::getpid()) + "-999";
  const std::string foreign = "procpool-1-" + std::to_string(dead_pid()) + "-1";
  for (const std::string& dir : {stale, live, foreign}) {
    REQUIRE(::mkdir((parent->directory() + "/" + dir).c_str(), 0755) == 0);
    REQUIRE(::mkdir((parent->directory() + "/" + dir + "/worker-1").c_str(), 0755) == 0);
  }
  // Something the dead host's worker left running in its cgroup.
  const std::string leftover_cgroup = parent->directory() + "/" + stale + "/worker-1";
  pid_t leftover = ::fork();
  if (leftover == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive a test that aborts
    std::ofstream(leftover_cgroup + "/cgroup.procs") << 0;
    for (;;)
      ::pause();
  }
  REQUIRE(procpool::test::eventually([&] { return pids_in(leftover_cgroup).size() == 1; }));

  LogLines log;
  PoolOptions options = procpool::test::quiet_options(1);
  options.worker_cgroups = {true, 256 * MiB, 0, parent->directory(), true};
  options.log = log.sink();
  {
    Pool pool(options);
    CHECK(log.count("removing 1 memory cgroup(s) left by pools whose host died") == 1);
    int status = 0;
    REQUIRE(::waitpid(leftover, &status, 0) == leftover);
    CHECK((WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL));
    auto has = [&](const std::string& dir) {
      std::vector<std::string> dirs = subdirectories(parent->directory());
      return std::find(dirs.begin(), dirs.end(), dir) != dirs.end();
    };
    CHECK(procpool::test::eventually([&] { return !has(stale); }));
    CHECK(has(live));     // its host runs
    CHECK(has(foreign));  // another pid namespace: its pid means nothing here
  }
  for (const std::string& dir : {live, foreign}) {
    ::rmdir((parent->directory() + "/" + dir + "/worker-1").c_str());
    ::rmdir((parent->directory() + "/" + dir).c_str());
  }
}

TEST_CASE("where cgroups cannot be made, the pool says so once and runs on the sampled limits") {
  const std::string not_a_cgroup = std::filesystem::temp_directory_path().string();
  LogLines log;
  PoolOptions options = procpool::test::quiet_options(1);
  options.worker_cgroups = {true, 256 * MiB, 0, not_a_cgroup, false};
  options.log = log.sink();
  {
    Pool pool(options);
    CHECK(pool.submit("echo", procpool::test::bytes("x")).get().ok());
    PoolStats stats = pool.stats();
    CHECK(stats.memory.enforcement == MemoryEnforcement::sampled);
    CHECK(stats.memory.worker_cgroups.empty());
    CHECK(stats.memory.worker_cap_bytes == 0);
  }
  CHECK(log.count("per-worker memory cgroups are off: MemoryCgroupOptions::parent: " +
                  not_a_cgroup + " is not a memory cgroup") == 1);
  options.worker_cgroups.required = true;
  try {
    Pool pool(options);
    FAIL("a pool was made without the cgroups it required");
  } catch (const ConfigError& e) {
    CHECK(e.field() == "MemoryCgroupOptions::required");
    CHECK(std::string(e.what()).find("is not a memory cgroup") != std::string::npos);
  }
}

TEST_CASE("per-worker cgroup options that cannot work are refused") {
  PoolOptions options = procpool::test::quiet_options(1);
  options.worker_cgroups.enabled = true;  // no cap, and no memory_hard_limit to take it from
  CHECK_THROWS_AS(Pool(options), ConfigError);
  options.worker_cgroups.max_bytes = 8 * MiB;
  CHECK_THROWS_AS(Pool(options), ConfigError);
  options.worker_cgroups.max_bytes = 256 * MiB;
  options.worker_cgroups.high_bytes = 256 * MiB;
  try {
    Pool pool(options);
    FAIL("memory.high at the cap was accepted");
  } catch (const ConfigError& e) {
    CHECK(e.field() == "MemoryCgroupOptions::high_bytes");
  }
}
