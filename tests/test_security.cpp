// Security: the shared memory is private to the host and its worker; a worker gets the
// environment, resource limits, user and privileges WorkerSecurity asks for, applied before any of
// its code runs; options that cannot work are refused at construction.
#include <fcntl.h>
#include <grp.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <procpool/procpool.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "catch.hpp"
#include "channel/segment.hpp"
#include "test_support.hpp"

using namespace procpool;
using procpool::test::bytes;
using procpool::test::text;

namespace {

constexpr std::uint32_t nobody = 65534;
constexpr std::size_t KiB = 1024;

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    lines.push_back(line);
  return lines;
}

bool contains(const std::vector<std::string>& lines, const std::string& line) {
  return std::find(lines.begin(), lines.end(), line) != lines.end();
}

std::string run_job(Pool& pool, const std::string& name) {
  JobResult result = pool.submit(name, Bytes{}).get();
  REQUIRE(result.ok());
  return text(result.value());
}

std::string limits_line(int resource) {
  rlimit limit{};
  REQUIRE(::getrlimit(resource, &limit) == 0);
  auto show = [](rlim_t value) {
    return value == RLIM_INFINITY ? std::string("inf") : std::to_string(value);
  };
  return show(limit.rlim_cur) + " " + show(limit.rlim_max);
}

// Runs `body` in a forked child that has dropped to `uid`, and returns the child's exit code
// (`body`'s return value; 100+ if the drop failed). The child leaves with _exit: no Catch2, no
// static destructors of the test process.
int in_child_as(std::uint32_t uid, const std::function<int()>& body) {
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    if (::setgroups(0, nullptr) != 0 || ::setresgid(uid, uid, uid) != 0 ||
        ::setresuid(uid, uid, uid) != 0) {
      ::_exit(100);
    }
    int rc = 101;
    try {
      rc = body();
    } catch (...) {
      rc = 102;
    }
    ::_exit(rc);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  return WEXITSTATUS(status);
}

// The field of the ConfigError that constructing a pool with `options` throws, or "".
std::string config_error_field(const PoolOptions& options) {
  try {
    Pool pool(options);
  } catch (const ConfigError& e) {
    return std::string(e.field());
  }
  return "";
}

}  // namespace

// ---- Shared memory --------------------------------------------------------------------------

TEST_CASE("a segment has no name anywhere: an anonymous 0600 object reached only by descriptor") {
  using procpool::detail::Segment;
  Segment segment = Segment::create(64 * KiB, 1024, 1024, ::getpid());
  int fd = segment.descriptor();
  REQUIRE(fd >= 0);
  struct stat st {};
  REQUIRE(::fstat(fd, &st) == 0);
  CHECK((st.st_mode & 07777) == 0600);
  CHECK(st.st_uid == ::geteuid());
  CHECK((::fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0);
  // A memfd: nothing in /dev/shm (or anywhere else) to find, guess, pre-create or leave behind.
  std::string link = std::filesystem::read_symlink("/proc/self/fd/" + std::to_string(fd));
  CHECK(link.starts_with("/memfd:procpool-segment"));
  CHECK(test::shm_entries_for(::getpid()).empty());
  // Its size is sealed: a worker that got hold of a descriptor cannot cut the pages from under
  // the host's mapping (the host's next access would be a SIGBUS), nor add seals of its own.
  errno = 0;
  CHECK(::ftruncate(fd, 0) == -1);
  CHECK(errno == EPERM);
  CHECK(::ftruncate(fd, 1 << 30) == -1);
  CHECK(::fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE) == -1);

  SECTION("another user cannot open it through /proc") {
    if (::geteuid() != 0) {
      WARN("not root: cannot start a process as another user to try");
      return;
    }
    std::string path = "/proc/" + std::to_string(::getpid()) + "/fd/" + std::to_string(fd);
    int rc = in_child_as(nobody, [&] {
      int opened = ::open(path.c_str(), O_RDONLY);
      return opened < 0 && errno == EACCES ? 0 : 1;
    });
    CHECK(rc == 0);
  }
}

// ---- Environment ----------------------------------------------------------------------------

TEST_CASE("by default a worker inherits the host's whole environment") {
  REQUIRE(::setenv("PROCPOOL_TEST_SECRET", "inherited-secret", 1) == 0);
  Pool pool(test::quiet_options(1));
  auto env = lines_of(run_job(pool, "environ"));
  CHECK(contains(env, "PROCPOOL_TEST_SECRET=inherited-secret"));
  if (const char* path = std::getenv("PATH")) CHECK(contains(env, std::string("PATH=") + path));
  ::unsetenv("PROCPOOL_TEST_SECRET");
}

TEST_CASE("with inherit, `set` adds and overrides variables") {
  REQUIRE(::setenv("PROCPOOL_TEST_SECRET", "host-value", 1) == 0);
  PoolOptions options = test::quiet_options(1);
  options.security.environment.set = {{"PROCPOOL_TEST_SECRET", "worker-value"},
                                      {"PROCPOOL_TEST_ADDED", "a=b c"}};
  Pool pool(options);
  auto env = lines_of(run_job(pool, "environ"));
  CHECK(contains(env, "PROCPOOL_TEST_SECRET=worker-value"));
  CHECK_FALSE(contains(env, "PROCPOOL_TEST_SECRET=host-value"));
  CHECK(contains(env, "PROCPOOL_TEST_ADDED=a=b c"));
  ::unsetenv("PROCPOOL_TEST_SECRET");
}

TEST_CASE("an allow-list keeps only the named host variables, prefixes, and the added ones") {
  REQUIRE(::setenv("PROCPOOL_TEST_SECRET", "must-not-leak", 1) == 0);
  REQUIRE(::setenv("PROCPOOL_KEEP_ONE", "1", 1) == 0);
  REQUIRE(::setenv("PROCPOOL_KEEP_TWO", "2", 1) == 0);
  REQUIRE(::setenv("LANG", "C.UTF-8", 1) == 0);
  PoolOptions options = test::quiet_options(1);
  WorkerEnvironment& environment = options.security.environment;
  environment.mode = EnvironmentMode::allow_list;
  environment.allow.push_back("PROCPOOL_KEEP_*");
  environment.set = {{"PROCPOOL_TEST_ADDED", "yes"}, {"LANG", "en_GB.UTF-8"}};
  Pool pool(options);
  auto env = lines_of(run_job(pool, "environ"));

  CHECK(contains(env, "PROCPOOL_KEEP_ONE=1"));
  CHECK(contains(env, "PROCPOOL_KEEP_TWO=2"));
  CHECK(contains(env, "PROCPOOL_TEST_ADDED=yes"));
  CHECK(contains(env, "LANG=en_GB.UTF-8"));
  if (const char* path = std::getenv("PATH")) CHECK(contains(env, std::string("PATH=") + path));
  // Nothing else: every variable is allowed by name or prefix, or added.
  for (const std::string& entry : env) {
    std::string name = entry.substr(0, entry.find('='));
    bool expected = name.starts_with("PROCPOOL_KEEP_") || name == "PROCPOOL_TEST_ADDED" ||
                    std::find(environment.allow.begin(), environment.allow.end(), name) !=
                        environment.allow.end();
    INFO(entry);
    CHECK(expected);
  }
  CHECK(std::none_of(env.begin(), env.end(), [](const std::string& entry) {
    return entry.find("must-not-leak") != std::string::npos;
  }));
  ::unsetenv("PROCPOOL_TEST_SECRET");
  ::unsetenv("PROCPOOL_KEEP_ONE");
  ::unsetenv("PROCPOOL_KEEP_TWO");
}

TEST_CASE("an empty allow-list gives a worker only the variables set for it") {
  PoolOptions options = test::quiet_options(1);
  options.security.environment.mode = EnvironmentMode::allow_list;
  options.security.environment.allow.clear();
  options.security.environment.set = {{"ONLY", "this"}};
  Pool pool(options);
  CHECK(run_job(pool, "environ") == "ONLY=this\n");
  CHECK(text(pool.submit("echo", bytes("still works")).get().value()) == "still works");
}

// ---- Descriptors --------------------------------------------------------------------------------
// A worker's descriptors (0-3 only) are checked in test_pool_basics; here with every restriction.

// ---- Resource limits ----------------------------------------------------------------------------

TEST_CASE("by default a worker inherits the host's resource limits") {
  Pool pool(test::quiet_options(1));
  auto limits = lines_of(run_job(pool, "rlimits"));
  REQUIRE(limits.size() == 3);
  CHECK(limits[0] == limits_line(RLIMIT_NOFILE));
  CHECK(limits[1] == limits_line(RLIMIT_CORE));
  CHECK(limits[2] == limits_line(RLIMIT_AS));
}

TEST_CASE("max_open_files and core_dump_limit are a worker's soft and hard limits") {
  PoolOptions options = test::quiet_options(1);
  options.security.max_open_files = 64;
  options.security.core_dump_limit = 0;
  Pool pool(options);
  auto limits = lines_of(run_job(pool, "rlimits"));
  REQUIRE(limits.size() == 3);
  CHECK(limits[0] == "64 64");
  CHECK(limits[1] == "0 0");
  CHECK(limits[2] == limits_line(RLIMIT_AS));
  CHECK(run_job(pool, "open_fds") == "0 1 2 3 5 ");
  // Jobs still run, payloads still stream through the ring.
  std::string big(300 * KiB, 'x');
  CHECK(text(pool.submit("echo", bytes(big)).get().value()) == big);
}

TEST_CASE("a limit the kernel refuses fails the spawn, naming the call") {
  if (::geteuid() != 0) {
    WARN("not root: validation refuses a limit above the hard limit before any spawn");
    return;
  }
  // Even root cannot raise RLIMIT_NOFILE above fs.nr_open.
  std::uint64_t nr_open = 0;
  std::ifstream("/proc/sys/fs/nr_open") >> nr_open;
  REQUIRE(nr_open > 0);
  std::mutex mutex;
  std::vector<std::string> log;
  PoolOptions options = test::quiet_options(1);
  options.security.max_open_files = nr_open + 1;
  options.log = [&](LogLevel, std::string_view line) {
    std::lock_guard lock(mutex);
    log.emplace_back(line);
  };
  Pool pool(options);
  auto logged = [&](const std::string& text) {
    std::lock_guard lock(mutex);
    return std::any_of(log.begin(), log.end(), [&](const std::string& line) {
      return line.find(text) != std::string::npos;
    });
  };
#if defined(__SANITIZE_THREAD__)
  // ThreadSanitizer turns vfork into fork: the child's report does not reach the host, and the
  // failure shows as a started child exiting 127 before its hello: a failed start.
  CHECK(test::eventually([&] { return pool.stats().start_failures > 0; }));
  CHECK(pool.stats().succeeded == 0);
  static_cast<void>(logged);
#else
  CHECK(test::eventually([&] { return logged("setrlimit(RLIMIT_NOFILE) failed in the child"); }));
  CHECK(pool.stats().workers_started == 0);
#endif
}

// ---- User and privileges ------------------------------------------------------------------------

TEST_CASE("run_as starts workers as that user, with no supplementary groups, and jobs work") {
  if (::geteuid() != 0) {
    WARN("not root: run_as needs a host running as root (CI runs as root)");
    return;
  }
  PoolOptions options = test::quiet_options(2);
  options.security.run_as = RunAs{nobody, nobody};
  options.security.no_new_privileges = true;
  options.security.core_dump_limit = 0;
  options.security.max_open_files = 256;
  options.recycle.memory_metric = MemoryMetric::pss;
  Pool pool(options);

  std::string expected =
      "uid=65534/65534/65534 gid=65534/65534/65534 groups=0 no_new_privs=1 dumpable=1";
  CHECK(run_job(pool, "credentials") == expected);
  CHECK(run_job(pool, "open_fds") == "0 1 2 3 5 ");
  auto limits = lines_of(run_job(pool, "rlimits"));
  REQUIRE(limits.size() == 3);
  CHECK(limits[0] == "256 256");
  CHECK(limits[1] == "0 0");

  // End to end, on both workers, with payloads and results larger than the ring.
  std::string big(200 * KiB, 'y');
  std::vector<JobFuture> futures;
  for (int i = 0; i < 8; ++i)
    futures.push_back(pool.submit("echo", bytes(big + std::to_string(i))));
  for (int i = 0; i < 8; ++i) {
    JobResult result = futures[i].get();
    REQUIRE(result.ok());
    CHECK(text(result.value()) == big + std::to_string(i));
  }
  // The host still reads the workers' memory (statm, and smaps_rollup, which needs ptrace access):
  // of each worker once it is ready (a worker still starting, as the second may be on a loaded
  // machine after the first served every job, has not been read yet).
  REQUIRE(test::settled(pool, 2));
  PoolStats stats = pool.stats();
  CHECK(stats.health == PoolHealth::healthy);
  REQUIRE_FALSE(stats.workers.empty());
  for (const WorkerStats& worker : stats.workers) {
    CHECK(worker.rss_bytes > 0);
    CHECK(worker.memory_bytes > 0);
  }
  // Handing the segment to the worker's user must not leave it behind.
  pool.shutdown(std::chrono::seconds(5));
  CHECK(test::shm_entries_for(::getpid()).empty());
}

TEST_CASE("a crash of a worker running as another user is reported as for any worker") {
  if (::geteuid() != 0) {
    WARN("not root: run_as needs a host running as root (CI runs as root)");
    return;
  }
  PoolOptions options = test::quiet_options(1);
  options.security.run_as = RunAs{nobody, nobody};
  Pool pool(options);
  JobResult crashed = pool.submit("segv", Bytes{}).get();
  REQUIRE_FALSE(crashed.ok());
  CHECK(crashed.error().kind == ErrorKind::worker_crashed);
  // Its replacement runs as that user too.
  CHECK(run_job(pool, "credentials").starts_with("uid=65534/65534/65534 "));
}

TEST_CASE("no_new_privileges alone keeps the host's user") {
  PoolOptions options = test::quiet_options(1);
  options.security.no_new_privileges = true;
  Pool pool(options);
  std::string uid = std::to_string(::getuid());
  CHECK(run_job(pool, "credentials").starts_with("uid=" + uid + "/"));
  CHECK(run_job(pool, "credentials").ends_with(" no_new_privs=1 dumpable=1"));
  PoolOptions plain = test::quiet_options(1);
  Pool plain_pool(plain);
  CHECK(run_job(plain_pool, "credentials").ends_with(" no_new_privs=0 dumpable=1"));
}

TEST_CASE("workers of one user can read each other's memory unless they are not dumpable") {
  if (::geteuid() != 0) {
    WARN("not root: run_as needs a host running as root (CI runs as root)");
    return;
  }
  // Another process of the workers' user (a compromised sibling, say) tries to read a worker's
  // environment and to open its memory through /proc.
  auto sibling_can_read = [](int worker) {
    return in_child_as(nobody, [worker] {
      std::string proc = "/proc/" + std::to_string(worker);
      int environ_fd = ::open((proc + "/environ").c_str(), O_RDONLY);
      int mem_fd = ::open((proc + "/mem").c_str(), O_RDONLY);
      if (environ_fd >= 0 && mem_fd >= 0) return 0;
      if (environ_fd < 0 && mem_fd < 0 && errno == EACCES) return 1;
      return 2;
    });
  };
  PoolOptions options = test::quiet_options(1);
  options.security.run_as = RunAs{nobody, nobody};
  options.recycle.memory_metric = MemoryMetric::pss;

  SECTION("dumpable (the default): readable") {
    Pool pool(options);
    int worker = std::stoi(run_job(pool, "pid"));
    CHECK(sibling_can_read(worker) == 0);
  }
  SECTION("not dumpable: not readable, no core dump, and the host still reads its memory") {
    options.security.dumpable = false;
    Pool pool(options);
    CHECK(run_job(pool, "credentials").ends_with(" dumpable=0"));
    int worker = std::stoi(run_job(pool, "pid"));
    CHECK(sibling_can_read(worker) == 1);
    REQUIRE(test::eventually([&] {
      auto stats = pool.stats();
      return stats.workers.size() == 1 && stats.workers[0].state == WorkerState::idle;
    }));
    CHECK(pool.stats().workers[0].memory_bytes > 0);
  }
}

TEST_CASE(
    "a host that is not root is refused run_as, hidden workers it must measure, and limits "
    "above its hard limit") {
  if (::geteuid() != 0) {
    PoolOptions options = test::quiet_options(1);
    options.security.run_as = RunAs{nobody, nobody};
    CHECK(config_error_field(options) == "WorkerSecurity::run_as");
    return;
  }
  // As root: try it from a child process that is not root any more.
  int rc = in_child_as(nobody, [] {
    PoolOptions options = test::quiet_options(1);
    options.security.run_as = RunAs{nobody, nobody};
    if (config_error_field(options) != "WorkerSecurity::run_as") return 1;

    PoolOptions hidden = test::quiet_options(1);
    hidden.security.dumpable = false;
    hidden.recycle.memory_metric = MemoryMetric::uss;
    if (config_error_field(hidden) != "WorkerSecurity::dumpable") return 3;

    rlimit limit{};
    ::getrlimit(RLIMIT_NOFILE, &limit);
    if (limit.rlim_max == RLIM_INFINITY) return 0;
    PoolOptions too_many = test::quiet_options(1);
    too_many.security.max_open_files = static_cast<std::uint64_t>(limit.rlim_max) + 1;
    if (config_error_field(too_many) != "WorkerSecurity::max_open_files") return 2;
    return 0;
  });
  CHECK(rc == 0);
}
