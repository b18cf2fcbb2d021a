// The host is never the OOM victim: every process procpool starts is the kernel OOM
// killer's preferred victim, set before any of its code runs; and under a container's memory
// limit, a job whose allocations outrun the memory sampling costs its worker, not the host.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <mutex>
#include <procpool/procpool.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "catch.hpp"
#include "test_cgroup.hpp"
#include "test_support.hpp"

using namespace procpool;
using procpool::test::text;

namespace {

std::string oom_score_adj_of(int pid) {
  return procpool::test::read_first_line("/proc/" + std::to_string(pid) + "/oom_score_adj");
}

/// Processes whose process group is `pgid` (a worker's group: the worker, its guard, its jobs'
/// children).
std::vector<int> process_group(int pgid) {
  std::vector<int> pids;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string line = procpool::test::read_first_line(entry.path().string() + "/stat");
    auto close = line.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(line.substr(close + 2));
    char state = 0;
    int ppid = 0, group = 0;
    rest >> state >> ppid >> group;
    if (group == pgid && state != 'Z') pids.push_back(std::stoi(name));
  }
  return pids;
}

std::string run_text(Pool& pool, const std::string& name) {
  JobResult result = pool.submit(name, Bytes{}).get();
  REQUIRE(result.ok());
  return text(result.value());
}

/// Runs `body` in a child process and returns its exit status (for tests that must change what
/// this process cannot take back: its own OOM score, its user).
template <class Body>
int in_child(Body body) {
  pid_t pid = ::fork();
  if (pid == 0) {
    int code = 1;
    try {
      code = body();
    } catch (...) {
      code = 2;
    }
    ::_exit(code);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

bool write_own_oom_score_adj(int value) {
  std::ofstream out("/proc/self/oom_score_adj");
  out << value;
  out.flush();
  return static_cast<bool>(out);
}

}  // namespace

TEST_CASE("every process procpool starts is the OOM killer's first choice before it runs a job") {
  for (StartMode mode : {StartMode::exec, StartMode::fork_server}) {
    INFO("start mode " << (mode == StartMode::exec ? "exec" : "fork_server"));
    PoolOptions options = procpool::test::quiet_options(2);
    options.start_mode = mode;
    const std::string host_before = oom_score_adj_of(::getpid());
    Pool pool(options);
    REQUIRE(procpool::test::settled(pool, 2));
    // What a job sees of its own process, in both workers.
    CHECK(run_text(pool, "oom_score_adj") == "1000");
    CHECK(run_text(pool, "oom_score_adj") == "1000");
    for (const WorkerStats& worker : pool.stats().workers) {
      CHECK(oom_score_adj_of(worker.pid) == "1000");
      // The guard of the worker's process group (it shares the worker's memory where it can).
      std::vector<int> group = process_group(worker.pid);
      CHECK(group.size() >= 2);
      for (int pid : group)
        CHECK(oom_score_adj_of(pid) == "1000");
    }
    if (mode == StartMode::fork_server) {
      std::vector<int> servers = procpool::test::fork_servers(::getpid());
      REQUIRE(servers.size() == 1);
      CHECK(oom_score_adj_of(servers.front()) == "1000");
    }
    CHECK(oom_score_adj_of(::getpid()) == host_before);  // the host keeps its own
  }
}

TEST_CASE("worker_oom_score_adj 0 leaves workers the host's value; any other value is theirs") {
  // In a child: this process cannot lower its own score again unless it is privileged.
  int status = in_child([] {
    if (!write_own_oom_score_adj(300)) return 10;
    for (int wanted : {0, 500}) {
      PoolOptions options = procpool::test::quiet_options(1);
      options.worker_oom_score_adj = wanted;
      Pool pool(options);
      JobResult result = pool.submit("oom_score_adj", Bytes{}).get();
      if (!result.ok()) return 11;
      if (text(result.value()) != (wanted == 0 ? "300" : "500")) return 12;
    }
    return 0;
  });
  CHECK(status == 0);
}

TEST_CASE(
    "worker_oom_score_adj out of range, or below the host's without the privilege, is refused") {
  for (int bad : {-1001, 1001}) {
    PoolOptions options = procpool::test::quiet_options(1);
    options.worker_oom_score_adj = bad;
    CHECK_THROWS_AS(Pool(options), ConfigError);
  }
  // A host at 500 without CAP_SYS_RESOURCE (an unprivileged user) cannot give its workers 100.
  int status = in_child([] {
    if (!write_own_oom_score_adj(500)) return 10;
    if (::geteuid() == 0 && ::setuid(65534) != 0) return 11;
    PoolOptions options = procpool::test::quiet_options(1);
    options.worker_oom_score_adj = 100;
    try {
      Pool pool(options);
    } catch (const ConfigError& e) {
      const std::string what = e.what();
      return what.find("worker_oom_score_adj") != std::string::npos &&
                     what.find("CAP_SYS_RESOURCE") != std::string::npos
                 ? 0
                 : 12;
    }
    return 13;
  });
  CHECK(status == 0);
}

// The failure this guards against: a host holding 380 MiB in a 640 MiB memory cgroup (a
// container's limit), one worker with memory_hard_limit at 200 MiB, and a job that allocates 1 GiB
// in 64 MiB blocks, faster than the 250 ms memory sample. The kernel's OOM killer must end the
// worker, not the host; the host keeps serving with its memory intact. Near the cgroup's limit the
// kernel's reclaim slows the job's allocations down, enough at times for a 250 ms sample to see
// the worker first; the sample comes after 10 s here, so that only the kernel can stop the job.
TEST_CASE(
    "under a container's memory limit, a job outrunning the sampling kills its worker, not the "
    "host") {
#ifdef PROCPOOL_TEST_TSAN
  PROCPOOL_SKIP("ThreadSanitizer's shadow memory does not fit the host in a 640 MiB cgroup");
#endif
  for (const char* mode : {"exec", "fork_server"}) {
    INFO("start mode " << mode);
    std::string why_not;
    auto cgroup = procpool::test::TestCgroup::make(std::uint64_t{640} << 20, why_not);
    if (!cgroup) PROCPOOL_SKIP("no memory cgroup for the host: " + why_not);
    int out[2];
    REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
    int host = cgroup->spawn({PROCPOOL_TEST_OOM_HOST, mode, "380", "200", "1024", "10000"}, out[1]);
    ::close(out[1]);
    std::string printed;
    char buffer[4096];
    for (ssize_t n; (n = ::read(out[0], buffer, sizeof buffer)) > 0;)
      printed.append(buffer, static_cast<std::size_t>(n));
    ::close(out[0]);
    int status = 0;
    REQUIRE(::waitpid(host, &status, 0) == host);
    INFO("the host printed:\n" << printed);
    CHECK_FALSE(WIFSIGNALED(status));  // before the fix: SIGKILL, from the OOM killer
    REQUIRE(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
    // The job's one outcome says what happened: the kernel's OOM killer, and which limit.
    CHECK(printed.find("outcome memory_limit the kernel's OOM killer ended worker (pid ") !=
          std::string::npos);
    CHECK(printed.find("while it ran 'grab_mb': the memory cgroup " + cgroup->directory() +
                       " reached its limit of 640.0 MiB") != std::string::npos);
    CHECK(printed.find("echo ok") != std::string::npos);
    // An idempotent job is retried after an OOM kill, as after any memory kill.
    CHECK(printed.find("retried ok") != std::string::npos);
    CHECK(printed.find("host memory intact") != std::string::npos);
    CHECK(printed.find("oom_kill events 2") != std::string::npos);
    CHECK(printed.find("recycles oom_kill=2\n") != std::string::npos);
    CHECK(cgroup->oom_kills() == 2);  // the kernel did step in, twice: the sampling did not
  }
}

TEST_CASE("a SIGKILL that procpool did not send, with no OOM kill counted, is not called one") {
  std::vector<PoolEvent> events;
  std::mutex events_mutex;
  PoolOptions options = procpool::test::quiet_options(1);
  options.on_event = [&](const PoolEvent& event) {
    std::lock_guard lock(events_mutex);
    events.push_back(event);
  };
  Pool pool(options);
  JobResult result = pool.submit("sigkill", Bytes{}).get();
  REQUIRE_FALSE(result.ok());
  CHECK(result.error().kind == ErrorKind::worker_crashed);
  CHECK(result.error().message.find("was killed by SIGKILL, not sent by procpool (the kernel "
                                    "counted no OOM kill: another process sent it)") !=
        std::string::npos);
  REQUIRE(procpool::test::eventually([&] { return pool.stats().workers_exited == 1; }));
  CHECK(pool.stats().recycles(RecycleReason::crash) == 1);
  CHECK(pool.stats().recycles(RecycleReason::oom_kill) == 0);
  std::lock_guard lock(events_mutex);
  for (const PoolEvent& event : events)
    CHECK(event.type != EventType::oom_kill);
}
