// StartMode::fork_server end to end, with real processes: workers are forks of one fork server and
// children of the host, each starts with the server's memory (never an earlier worker's), the
// WorkerSecurity settings hold in them, a fork server that dies is replaced, and nothing is left
// behind when the pool goes.
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <procpool/procpool.hpp>
#include <set>
#include <string>
#include <vector>

#include "catch.hpp"
#include "test_support.hpp"

using namespace procpool;
using namespace std::chrono_literals;

namespace {

PoolOptions fork_server_options(std::size_t workers = 1) {
  PoolOptions options = test::quiet_options(workers);
  options.start_mode = StartMode::fork_server;
  return options;
}

std::string run_job(Pool& pool, const char* job) {
  JobResult r = pool.submit(job, Bytes{}).get();
  INFO((r.ok() ? std::string() : r.error().message));
  REQUIRE(r.ok());
  return test::text(r.value());
}

int pid_of_worker(Pool& pool) {
  return std::stoi(run_job(pool, "pid"));
}

/// Collects the log lines at warning level and above.
struct Warnings {
  std::mutex mutex;
  std::vector<std::string> lines;

  LogSink sink() {
    return [this](LogLevel level, std::string_view line) {
      if (level < LogLevel::warning) return;
      std::lock_guard lock(mutex);
      lines.emplace_back(line);
    };
  }
  bool any_contains(std::string_view text) { return count_containing(text) > 0; }
  std::size_t count_containing(std::string_view text) {
    std::lock_guard lock(mutex);
    return static_cast<std::size_t>(
        std::count_if(lines.begin(), lines.end(),
                      [&](const std::string& line) { return line.find(text) != line.npos; }));
  }
};

/// Stops the pool's fork server (SIGSTOP) and has the pool ask it for a worker: the pool's one
/// worker (max_jobs = 1) runs a job and retires as it gets it. The job's result still comes, and
/// stats() shows the replacement starting, with no pid yet. Returns the server's pid.
int stop_server_and_start_a_worker(Pool& pool) {
  REQUIRE(run_job(pool, "echo").empty());
  REQUIRE(test::settled(pool, 1));
  std::vector<int> servers = test::fork_servers(::getpid());
  REQUIRE(servers.size() == 1);
  REQUIRE(::kill(servers[0], SIGSTOP) == 0);
  REQUIRE(test::eventually([&] { return test::process_stopped(servers[0]); }));
  JobFuture job = pool.submit("echo", test::bytes("through"));
  REQUIRE(job.wait_for(10s) == std::future_status::ready);
  JobResult result = job.get();
  REQUIRE(result.ok());
  CHECK(test::text(result.value()) == "through");
  REQUIRE(test::eventually([&] {
    PoolStats stats = pool.stats();
    return stats.workers.size() == 1 && stats.workers[0].pid == 0 &&
           stats.workers[0].state == WorkerState::starting;
  }));
  return servers[0];
}

}  // namespace

TEST_CASE("fork-server workers are children of the host, beside one fork server") {
  Pool pool(fork_server_options(2));
  // Two jobs held at once, so both workers answer.
  test::Gate first, second;
  auto a = pool.submit("wait_fifo", first.payload());
  auto b = pool.submit("wait_fifo", second.payload());
  REQUIRE(test::eventually([&] { return pool.stats().in_flight == 2; }));
  first.release();
  second.release();
  REQUIRE(a.get().ok());
  REQUIRE(b.get().ok());

  REQUIRE(test::settled(pool, 2));
  std::vector<int> servers = test::fork_servers(::getpid());
  REQUIRE(servers.size() == 1);
  std::vector<int> children = test::child_pids(::getpid());
  for (const auto& w : pool.stats().workers) {
    INFO("worker pid " << w.pid);
    CHECK(std::find(children.begin(), children.end(), w.pid) != children.end());
    CHECK(w.pid != servers[0]);
  }
  CHECK(children.size() == 3);  // two workers and the server: the guards are not the host's
}

TEST_CASE("each fork-server worker starts with the server's memory, not an earlier worker's") {
  PoolOptions options = fork_server_options(1);
  options.recycle.max_jobs = 2;
  Pool pool(options);
  std::set<int> pids;
  for (int worker = 0; worker < 5; ++worker) {
    // A fork of the previous worker would count on from 2.
    CHECK(run_job(pool, "calls_in_this_process") == "1");
    CHECK(run_job(pool, "calls_in_this_process") == "2");
  }
  for (int i = 0; i < 10; ++i)
    pids.insert(pid_of_worker(pool));
  CHECK(pids.size() == 5);
  REQUIRE(test::settled(pool, 1));
  CHECK(test::fork_servers(::getpid()).size() == 1);  // one server made them all
}

TEST_CASE("max_jobs = 1 through the fork server: every job on a fresh process, no zombie") {
  PoolOptions options = fork_server_options(2);
  options.recycle.max_jobs = 1;
  Pool pool(options);
  std::vector<JobFuture> futures;
  for (int i = 0; i < 60; ++i)
    futures.push_back(pool.submit("pid", Bytes{}));
  std::set<std::string> pids;
  for (auto& f : futures) {
    JobResult r = f.get();
    REQUIRE(r.ok());
    pids.insert(test::text(r.value()));
  }
  CHECK(pids.size() == 60);
  // Exited workers are reaped by the host (their parent), not left to the fork server.
  CHECK(test::eventually([&] { return test::zombie_children(::getpid()).empty(); }));
  CHECK(pool.stats().workers_started >= 60);
}

TEST_CASE("WorkerSecurity applies to fork-server workers") {
  PoolOptions options = fork_server_options(1);
  options.security.max_open_files = 64;
  options.security.core_dump_limit = 0;
  options.security.environment.set = {{"PROCPOOL_FORK_SERVER_TEST", "set"}};
  options.security.no_new_privileges = true;

  SECTION("limits, environment and privileges come from the server's start") {
    Pool pool(options);
    std::string limits = run_job(pool, "rlimits");
    CHECK(limits.starts_with("64 64\n0 0\n"));
    CHECK(run_job(pool, "environ").find("PROCPOOL_FORK_SERVER_TEST=set\n") != std::string::npos);
    CHECK(run_job(pool, "credentials").ends_with(" no_new_privs=1 dumpable=1"));
  }
  SECTION("dumpable is each worker's own: the server is never dumpable, its workers as asked") {
    options.security.dumpable = false;
    Pool pool(options);
    CHECK(run_job(pool, "credentials").ends_with(" dumpable=0"));
  }
}

TEST_CASE("a fork-server worker's crash and its output are reported as a spawned worker's") {
  Pool pool(fork_server_options(1));
  JobResult r = pool.submit("stderr_then_exit", Bytes{}).get();
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().kind == ErrorKind::worker_crashed);
  CHECK(r.error().exit_code == 9);
  CHECK(r.error().worker_stderr == "first line\nlast words before exit\n");
  CHECK(run_job(pool, "echo").empty());  // and the next worker serves
}

TEST_CASE("a fork server that dies is replaced at the next start, with a warning") {
  Warnings warnings;
  PoolOptions options = fork_server_options(1);
  options.recycle.max_jobs = 1;
  options.log = warnings.sink();
  Pool pool(options);
  REQUIRE(run_job(pool, "echo").empty());
  // The worker that replaced the one above is up: no start is under way while the server dies,
  // and none is counted as a server (a forked worker shows the server's command line until it
  // blanks its --procpool-fork-server argument).
  REQUIRE(test::settled(pool, 1));
  std::vector<int> servers = test::fork_servers(::getpid());
  REQUIRE(servers.size() == 1);
  REQUIRE(::kill(servers[0], SIGKILL) == 0);
  REQUIRE(test::eventually([&] { return !test::process_alive(servers[0]); }));

  // The idle worker serves this job; its successor needs a new server.
  REQUIRE(run_job(pool, "echo").empty());
  REQUIRE(run_job(pool, "echo").empty());
  REQUIRE(test::settled(pool, 1));
  std::vector<int> now = test::fork_servers(::getpid());
  REQUIRE(now.size() == 1);
  CHECK(now[0] != servers[0]);
  CHECK(warnings.any_contains("the fork server (pid " + std::to_string(servers[0]) +
                              ") was killed by SIGKILL; starting another"));
  CHECK(pool.stats().start_failures == 0);
}

TEST_CASE("while the fork server does not answer, the pool goes on serving jobs and stats()") {
  // The supervisor thread asks for a worker and goes on; it reads the answer when it comes. (It
  // once waited up to start_timeout for each answer, holding the state lock: no result was
  // delivered, and stats() blocked, until the server answered.)
  PoolOptions options = fork_server_options(1);
  options.recycle.max_jobs = 1;
  options.start_timeout = 60s;  // never reached here: the waits end long before
  Pool pool(options);
  int server = stop_server_and_start_a_worker(pool);

  REQUIRE(::kill(server, SIGCONT) == 0);
  REQUIRE(run_job(pool, "echo").empty());
  REQUIRE(test::settled(pool, 1));
  PoolStats stats = pool.stats();
  CHECK(stats.workers[0].pid > 0);
  CHECK(stats.start_failures == 0);
}

TEST_CASE("a fork server that dies with a start unanswered fails that start and is replaced") {
  Warnings warnings;
  PoolOptions options = fork_server_options(1);
  options.recycle.max_jobs = 1;
  options.start_timeout = 60s;
  options.restart_backoff_initial = 0ms;
  options.log = warnings.sink();
  Pool pool(options);
  int server = stop_server_and_start_a_worker(pool);
  REQUIRE(::kill(server, SIGKILL) == 0);

  // The end of file on its socket says it went away: the start fails, a new server starts the
  // next worker, which serves.
  REQUIRE(test::eventually([&] { return pool.stats().start_failures == 1; }));
  REQUIRE(run_job(pool, "echo").empty());
  REQUIRE(test::settled(pool, 1));
  std::vector<int> servers = test::fork_servers(::getpid());
  REQUIRE(servers.size() == 1);
  CHECK(servers[0] != server);
  CHECK(warnings.any_contains("the fork server (pid " + std::to_string(server) +
                              ") went away before it answered"));
}

TEST_CASE("a pool shut down while its fork server has a start unanswered leaves nothing behind") {
  // The pool does not wait start_timeout for the answer: the server is retired at once and gets
  // its grace period (2 s), then is killed; what it reports late would be killed too.
  PoolOptions options = fork_server_options(1);
  options.recycle.max_jobs = 1;
  options.start_timeout = 60s;
  {
    Pool pool(options);
    stop_server_and_start_a_worker(pool);
  }
  CHECK(test::child_pids(::getpid()).empty());
  CHECK(test::shm_entries_for(::getpid()).empty());
}

TEST_CASE("a fork server whose process runs a second thread refuses to fork, and says why") {
  // The worker program starts a thread before main(), as a static initialiser might: a fork
  // would copy only one of its threads. Every start fails with the reason, none forks.
  Warnings warnings;
  PoolOptions options = fork_server_options(1);
  options.security.environment.set = {{"PROCPOOL_TEST_THREAD_BEFORE_MAIN", "1"}};
  options.log = warnings.sink();
  Pool pool(options);
  REQUIRE(test::eventually([&] { return pool.stats().start_failures >= 1; }));
  CHECK(warnings.any_contains("does not fork: its process runs more than one thread"));
  CHECK(warnings.any_contains("or use StartMode::exec"));
  CHECK(pool.stats().workers_started == 0);
}

TEST_CASE("a fork server that cannot learn glibc's thread id refuses to fork, and says why") {
  // prctl(PR_GET_TID_ADDRESS) fails in the worker program (PROCPOOL_TEST_NO_TID_ADDRESS,
  // tests/helpers/test_worker.cpp), as on a kernel without CONFIG_CHECKPOINT_RESTORE: the server
  // would fork workers that lock mutexes under its own thread id, so it forks none.
  Warnings warnings;
  PoolOptions options = fork_server_options(1);
  options.worker_command = {PROCPOOL_TEST_WORKER};
  options.security.environment.set = {{"PROCPOOL_TEST_NO_TID_ADDRESS", "1"}};
  options.log = warnings.sink();
  {
    Pool pool(options);
    REQUIRE(test::eventually([&] { return pool.stats().start_failures >= 1; }));
    CHECK(warnings.any_contains("does not fork: it cannot learn where glibc keeps its thread id"));
    CHECK(warnings.any_contains("use StartMode::exec"));
    CHECK(pool.stats().workers_started == 0);
  }
  CHECK(test::child_pids(::getpid()).empty());
}

TEST_CASE("a fork-server pool leaves no process, zombie or segment behind") {
  {
    PoolOptions options = fork_server_options(2);
    options.recycle.max_jobs = 3;
    Pool pool(options);
    for (int i = 0; i < 20; ++i)
      REQUIRE(run_job(pool, "echo").empty());
    REQUIRE(test::settled(pool, 2));
    REQUIRE(test::fork_servers(::getpid()).size() == 1);
  }
  CHECK(test::child_pids(::getpid()).empty());
  CHECK(test::shm_entries_for(::getpid()).empty());
}

TEST_CASE("a fork server too slow to answer within start_timeout is replaced, leaving nothing") {
  // Each server takes 50 ms to load, more than the 1 ms start_timeout, so its first request times
  // out: the server is discarded (with the worker it forks and reports late) and, with no backoff,
  // the next start is tried at once rather than when something else wakes the supervisor. (Once
  // the test relied on an exec taking over 1 ms: on a quiet machine, servers answered in time.)
  Warnings warnings;
  PoolOptions options = fork_server_options(2);
  options.security.environment.set = {{"PROCPOOL_TEST_SLOW_START_MS", "50"}};
  options.start_timeout = 1ms;
  options.restart_backoff_initial = 0ms;
  options.restart_backoff_max = 0ms;
  options.restart_storm_threshold = 1000;
  options.log = warnings.sink();
  {
    Pool pool(options);
    // Both starts fail with the first server; they are tried again, with a second server, once
    // the first has answered late and exited (none is started while one may still answer), and
    // without any other event to wake the supervisor. stats() answers throughout.
    REQUIRE(test::eventually([&] { return pool.stats().start_failures >= 3; }));
    CHECK(warnings.count_containing("did not answer within 1 ms") >= 3);
  }
  CHECK(test::child_pids(::getpid()).empty());
  CHECK(test::shm_entries_for(::getpid()).empty());
}

// A fork-server worker starts as fork() would leave it: glibc's cached thread id is its own (the
// owner a mutex records, a robust mutex's owner the kernel checks at exit, a PI mutex's owner the
// kernel hands over from), and its robust-mutex list is registered with the kernel. (A raw clone
// once left the server's thread id in every worker and no robust list: robust mutexes a worker
// died holding stayed locked for good, and a PI mutex could not be unlocked.)

TEST_CASE("a fork-server worker's thread id, as glibc records it, is its own") {
  PoolOptions options = fork_server_options(1);
  options.recycle.max_jobs = 1;
  Pool pool(options);
  for (int worker = 0; worker < 3; ++worker) {
    std::string ids = run_job(pool, "glibc_tid");
    INFO("mutex owner, gettid(): " << ids);
    const auto space = ids.find(' ');
    REQUIRE(space != std::string::npos);
    CHECK(ids.substr(0, space) == ids.substr(space + 1));
  }
}

namespace {

/// A process-shared robust mutex in a file of /dev/shm that workers can map (the path is the
/// payload); removed with the object.
class SharedRobustMutex {
 public:
  SharedRobustMutex()
      : path_("/dev/shm/robust-mutex-test-" + std::to_string(::getpid())),
        fd_(::open(path_.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) {
    REQUIRE(fd_ >= 0);
    REQUIRE(::ftruncate(fd_, sizeof(pthread_mutex_t)) == 0);
    void* mapping =
        ::mmap(nullptr, sizeof(pthread_mutex_t), PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
    REQUIRE(mapping != MAP_FAILED);
    mutex_ = static_cast<pthread_mutex_t*>(mapping);
    pthread_mutexattr_t attributes;
    pthread_mutexattr_init(&attributes);
    pthread_mutexattr_setpshared(&attributes, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&attributes, PTHREAD_MUTEX_ROBUST);
    REQUIRE(pthread_mutex_init(mutex_, &attributes) == 0);
    pthread_mutexattr_destroy(&attributes);
  }
  ~SharedRobustMutex() {
    if (mutex_ != nullptr) ::munmap(mutex_, sizeof(pthread_mutex_t));
    ::close(fd_);
    ::unlink(path_.c_str());
  }
  SharedRobustMutex(const SharedRobustMutex&) = delete;
  SharedRobustMutex& operator=(const SharedRobustMutex&) = delete;

  Bytes payload() const { return test::bytes(path_); }
  /// pthread_mutex_timedlock with `timeout`: 0, EOWNERDEAD, ETIMEDOUT...; a mutex taken is made
  /// consistent and released.
  int lock_within(std::chrono::seconds timeout) {
    timespec deadline{};
    ::clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += timeout.count();
    const int result = pthread_mutex_timedlock(mutex_, &deadline);
    if (result == EOWNERDEAD) pthread_mutex_consistent(mutex_);
    if (result == 0 || result == EOWNERDEAD) pthread_mutex_unlock(mutex_);
    return result;
  }

 private:
  std::string path_;
  int fd_;
  pthread_mutex_t* mutex_ = nullptr;
};

}  // namespace

TEST_CASE("a robust mutex a fork-server worker dies holding is handed on as EOWNERDEAD") {
#ifdef PROCPOOL_TEST_TSAN
  PROCPOOL_SKIP("ThreadSanitizer does not model a mutex shared between processes (it reports one)");
#endif
  SharedRobustMutex shared;
  Pool pool(fork_server_options(1));
  for (int worker = 0; worker < 2; ++worker) {
    JobResult r = pool.submit("lock_robust_and_exit", shared.payload()).get();
    REQUIRE_FALSE(r.ok());
    INFO(r.error().message);
    REQUIRE(r.error().exit_code == 7);  // it exited holding the mutex
    // The worker has exited (its outcome says so): the kernel has walked its robust list.
    const int result = shared.lock_within(5s);
    INFO("pthread_mutex_timedlock: " << result << " (" << std::strerror(result) << ")");
    REQUIRE(result == EOWNERDEAD);  // else the mutex stays locked for good
  }
}

TEST_CASE("a priority-inheritance mutex contended in a fork-server worker is handed over") {
  Pool pool(fork_server_options(1));
  CHECK(run_job(pool, "pi_mutex_handoff") == "unlock=0 waiter=0");
}

TEST_CASE("a fork server killed between a fork and its answer leaves no worker behind") {
  // The worker program's first fork server is SIGKILLed right after its first fork, before it
  // sends the pid (PROCPOOL_TEST_DIE_BEFORE_ANSWER, tests/helpers/test_worker.cpp). The worker it
  // forked is the host's child (CLONE_PARENT) that no answer names: the host learns its pid all
  // the same, kills and reaps it, and the next server serves. (It once ran on, unknown to the
  // pool, or lay a zombie nobody reaped.)
  const std::string claim = (std::filesystem::temp_directory_path() /
                             ("procpool-test-die-before-answer-" + std::to_string(::getpid())))
                                .string();
  { std::ofstream(claim).put('x'); }
  Warnings warnings;
  PoolOptions options = fork_server_options(1);
  options.worker_command = {PROCPOOL_TEST_WORKER};
  options.security.environment.set = {{"PROCPOOL_TEST_DIE_BEFORE_ANSWER", claim}};
  options.restart_backoff_initial = 0ms;
  options.log = warnings.sink();
  {
    Pool pool(options);
    REQUIRE(run_job(pool, "echo").empty());
    REQUIRE(test::settled(pool, 1));
    CHECK_FALSE(std::filesystem::exists(claim));  // the first server died as asked
    CHECK(pool.stats().start_failures == 1);
    CHECK(warnings.any_contains("went away before it answered"));
    std::vector<int> servers = test::fork_servers(::getpid());
    REQUIRE(servers.size() == 1);
    std::vector<int> expected{servers[0], pool.stats().workers[0].pid};
    std::vector<int> children = test::child_pids(::getpid());
    std::sort(expected.begin(), expected.end());
    std::sort(children.begin(), children.end());
    // The server that died was reaped, and so was the worker it forked, before the next started.
    CHECK(children == expected);
    CHECK(test::zombie_children(::getpid()).empty());
  }
  std::filesystem::remove(claim);
  CHECK(test::child_pids(::getpid()).empty());
}
