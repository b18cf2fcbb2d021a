// The platform's memory cgroups (platform/cgroup.hpp): finding a process's memory cgroup from
// /proc/self/cgroup and mountinfo texts, the v2 files against a directory laid out as cgroupfs is
// (this machine's memory controller is bound to v1, so v2 cannot run for real here), and the
// whole cycle on the machine's real memory controller: make, cap, move a process in, count its OOM
// kill, remove.
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>
#include <vector>

#include "catch.hpp"
#include "platform/cgroup.hpp"
#include "test_cgroup.hpp"
#include "test_support.hpp"

using namespace procpool;
using platform::CgroupVersion;
using platform::MemoryCgroup;

namespace {

constexpr std::uint64_t MiB = std::uint64_t{1} << 20;

/// A directory tree standing in for a cgroupfs mount, removed with the test.
class FakeCgroupfs {
 public:
  FakeCgroupfs() {
    static int counter = 0;
    root_ =
        std::filesystem::temp_directory_path() /
        ("procpool-fake-cgroupfs-" + std::to_string(::getpid()) + "-" + std::to_string(++counter));
    std::filesystem::create_directories(root_);
  }
  ~FakeCgroupfs() {
    std::error_code ignored;
    std::filesystem::remove_all(root_, ignored);
  }
  std::string root() const { return root_.string(); }
  /// Writes `relative` (creating its directories) with `text`, as the kernel would show it.
  void file(const std::string& relative, const std::string& text) const {
    std::filesystem::path path = root_ / relative;
    std::filesystem::create_directories(path.parent_path());
    std::ofstream(path) << text;
  }
  std::string read(const std::string& relative) const {
    return procpool::test::read_first_line((root_ / relative).string());
  }
  /// A v2 cgroup directory as the kernel makes it under a parent that enables memory.
  void v2_cgroup(const std::string& relative) const {
    file(relative + "/cgroup.controllers", "memory pids\n");
    file(relative + "/cgroup.subtree_control", "\n");
    file(relative + "/cgroup.procs", "");
    file(relative + "/memory.max", "max\n");
    file(relative + "/memory.high", "max\n");
    file(relative + "/memory.swap.max", "max\n");
    file(relative + "/memory.oom.group", "0\n");
    file(relative + "/memory.events",
         "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n");
  }

 private:
  std::filesystem::path root_;
};

// This machine's layout: cgroup v1 controllers, and a cgroup2 mount without them.
constexpr const char* hybrid_cgroup =
    "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/45f3\n1:cpu:/\n0::/\n";
constexpr const char* hybrid_mountinfo =
    "30 22 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
    "31 30 0:28 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
    "34 30 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
    "40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";

}  // namespace

TEST_CASE("a process's memory cgroup is found in the hierarchy that has the memory controller") {
  SECTION("v1 controllers beside a cgroup2 mount (this machine)") {
    auto membership = platform::parse_cgroup_membership(hybrid_cgroup, hybrid_mountinfo);
    REQUIRE(membership.v1);
    CHECK(membership.v1->directory == "/sys/fs/cgroup/memory/process_api/45f3");
    CHECK(membership.v1->mount_point == "/sys/fs/cgroup/memory");
    REQUIRE(membership.v2);
    CHECK(membership.v2->directory == "/sys/fs/cgroup/unified");
    std::string why_not;
    auto chosen = platform::choose_memory_cgroup(membership, why_not);
    REQUIRE(chosen);
    CHECK(chosen->version == CgroupVersion::v1);
  }
  SECTION("pure cgroup v2 under systemd") {
    auto membership = platform::parse_cgroup_membership(
        "0::/system.slice/transcribe.service\n",
        "25 1 0:23 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n");
    CHECK_FALSE(membership.v1);
    REQUIRE(membership.v2);
    CHECK(membership.v2->directory == "/sys/fs/cgroup/system.slice/transcribe.service");
  }
  SECTION("a container with its own cgroup namespace sees itself at the root") {
    auto membership = platform::parse_cgroup_membership(
        "0::/\n", "600 500 0:30 / /sys/fs/cgroup ro,nosuid - cgroup2 cgroup rw\n");
    REQUIRE(membership.v2);
    CHECK(membership.v2->directory == "/sys/fs/cgroup");
  }
  SECTION("a mount of a subtree maps the path below its root; a path outside it is not there") {
    const char* mountinfo =
        "70 60 0:31 /kubepods/pod1 /sys/fs/cgroup/memory ro - cgroup cgroup rw,memory\n";
    auto inside = platform::parse_cgroup_membership("5:memory:/kubepods/pod1/c1\n", mountinfo);
    REQUIRE(inside.v1);
    CHECK(inside.v1->directory == "/sys/fs/cgroup/memory/c1");
    auto at_root = platform::parse_cgroup_membership("5:memory:/kubepods/pod1\n", mountinfo);
    REQUIRE(at_root.v1);
    CHECK(at_root.v1->directory == "/sys/fs/cgroup/memory");
    auto outside = platform::parse_cgroup_membership("5:memory:/kubepods/pod10\n", mountinfo);
    CHECK_FALSE(outside.v1);
  }
  SECTION("escaped characters in a mount point") {
    auto membership = platform::parse_cgroup_membership(
        "0::/a\n", "25 1 0:23 / /mnt/cg\\040root rw - cgroup2 cgroup2 rw\n");
    REQUIRE(membership.v2);
    CHECK(membership.v2->directory == "/mnt/cg root/a");
  }
  SECTION("a v2 mount is chosen only where its root lists the memory controller") {
    FakeCgroupfs fs;
    fs.file("cgroup.controllers", "cpuset cpu io memory pids\n");
    const std::string mountinfo = "25 1 0:23 / " + fs.root() + " rw - cgroup2 cgroup2 rw\n";
    auto membership = platform::parse_cgroup_membership("0::/app\n", mountinfo);
    std::string why_not;
    auto chosen = platform::choose_memory_cgroup(membership, why_not);
    REQUIRE(chosen);
    CHECK(chosen->version == CgroupVersion::v2);
    CHECK(chosen->directory == fs.root() + "/app");
    fs.file("cgroup.controllers", "cpu io pids\n");
    CHECK_FALSE(platform::choose_memory_cgroup(membership, why_not));
    CHECK(why_not.find("does not have the memory controller") != std::string::npos);
  }
  SECTION("no hierarchy at all") {
    std::string why_not;
    CHECK_FALSE(platform::choose_memory_cgroup(platform::parse_cgroup_membership("", ""), why_not));
    CHECK_FALSE(why_not.empty());
  }
}

TEST_CASE("cgroup v2 files: limits up the tree, OOM counters, capping a child") {
  FakeCgroupfs fs;
  fs.file("cgroup.controllers", "cpu io memory pids\n");
  fs.file("cgroup.subtree_control", "memory pids\n");
  fs.v2_cgroup("pods");
  fs.file("pods/memory.max", "671088640\n");
  fs.v2_cgroup("pods/app");
  MemoryCgroup app{CgroupVersion::v2, fs.root() + "/pods/app", fs.root()};

  SECTION("the lowest limit of the cgroup and its ancestors, and whose it is") {
    CHECK_FALSE(platform::memory_limit(app));  // "max"
    auto limit = platform::effective_memory_limit(app);
    REQUIRE(limit);
    CHECK(limit->bytes == 640 * MiB);
    CHECK(limit->directory == fs.root() + "/pods");
  }
  SECTION("a named directory is recognised by its files") {
    std::string why_not;
    auto named = platform::memory_cgroup_at(fs.root() + "/pods/app/", why_not);
    REQUIRE(named);
    CHECK(named->version == CgroupVersion::v2);
    CHECK(named->directory == fs.root() + "/pods/app");
    fs.file("plain/readme", "not a cgroup");
    CHECK_FALSE(platform::memory_cgroup_at(fs.root() + "/plain", why_not));
    CHECK(why_not.find("not a memory cgroup") != std::string::npos);
    fs.file("nomem/cgroup.controllers", "cpu pids\n");
    CHECK_FALSE(platform::memory_cgroup_at(fs.root() + "/nomem", why_not));
    CHECK(why_not.find("without the memory controller") != std::string::npos);
  }
  SECTION("OOM kills and reaching the cgroup's own limit, from memory.events") {
    CHECK(platform::oom_kill_count(app) == 0u);
    CHECK_FALSE(platform::reached_own_limit(app));
    fs.file("pods/app/memory.events",
            "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 1\n");
    CHECK(platform::oom_kill_count(app) == 1u);
    CHECK(platform::reached_own_limit(app));
  }
  SECTION("the memory controller for children: already on, available, or not there") {
    CHECK(platform::enable_memory_for_children(app) == "");
    CHECK(fs.read("pods/app/cgroup.subtree_control") == "+memory");
    fs.file("pods/app/cgroup.subtree_control", "memory\n");
    CHECK(platform::enable_memory_for_children(app) == "");
    fs.file("pods/app/cgroup.subtree_control", "\n");
    fs.file("pods/app/cgroup.controllers", "pids\n");
    CHECK(platform::enable_memory_for_children(app).find("not available") != std::string::npos);
  }
  SECTION("a capped child: memory.max, memory.high, no swap, the whole group killed on OOM") {
    // make_child_cgroup makes the directory; the kernel would fill it with its files.
    MemoryCgroup worker = platform::make_child_cgroup(app, "worker-1");
    CHECK(worker.directory == app.directory + "/worker-1");
    CHECK_THROWS_AS(platform::make_child_cgroup(app, "worker-1"), std::system_error);
    fs.v2_cgroup("pods/app/worker-1");
    platform::cap_memory(worker, {256 * MiB, 192 * MiB});
    CHECK(fs.read("pods/app/worker-1/memory.max") == "268435456");
    CHECK(fs.read("pods/app/worker-1/memory.high") == "201326592");
    CHECK(fs.read("pods/app/worker-1/memory.swap.max") == "0");
    CHECK(fs.read("pods/app/worker-1/memory.oom.group") == "1");
    // Without swap accounting or memory.oom.group (older kernels) those are left out.
    MemoryCgroup bare = platform::make_child_cgroup(app, "worker-2");
    fs.file("pods/app/worker-2/memory.max", "max\n");
    fs.file("pods/app/worker-2/memory.high", "max\n");
    platform::cap_memory(bare, {256 * MiB, 0});
    CHECK(fs.read("pods/app/worker-2/memory.max") == "268435456");
    CHECK(fs.read("pods/app/worker-2/memory.high") == "max");
    // Without memory.max it is no memory cgroup: an error naming the file.
    MemoryCgroup broken = platform::make_child_cgroup(app, "worker-3");
    try {
      platform::cap_memory(broken, {256 * MiB, 0});
      FAIL("cap_memory wrote to a file that is not there");
    } catch (const std::system_error& e) {
      CHECK(std::string(e.what()).find("worker-3/memory.max") != std::string::npos);
    }
    CHECK(platform::child_cgroups(app) ==
          std::vector<std::string>{"worker-1", "worker-2", "worker-3"});
  }
}

TEST_CASE("a real memory cgroup: capped, a process moved in by itself, its OOM kill counted") {
  std::string why_not;
  auto own = platform::own_memory_cgroup(why_not);
  if (!own) PROCPOOL_SKIP("no memory cgroup here: " + why_not);
  if (::geteuid() != 0) PROCPOOL_SKIP("not root: cannot make memory cgroups");
  std::string refused = platform::enable_memory_for_children(*own);
  if (!refused.empty()) PROCPOOL_SKIP(refused);
  // The test's own parent cgroup, to make children in.
  auto parent = procpool::test::TestCgroup::make(0, why_not);
  if (!parent) PROCPOOL_SKIP(why_not);
  std::string why;
  auto test_dir = platform::memory_cgroup_at(parent->directory(), why);
  REQUIRE(test_dir);
  REQUIRE(platform::enable_memory_for_children(*test_dir) == "");

  MemoryCgroup capped = platform::make_child_cgroup(*test_dir, "capped");
  platform::cap_memory(capped, {64 * MiB, 0});
  CHECK(platform::memory_limit(capped) == 64 * MiB);
  CHECK(platform::oom_kill_count(capped) == 0u);
  CHECK_FALSE(platform::reached_own_limit(capped));
  platform::UniqueFd procs = platform::open_cgroup_procs(capped);

  // A process that moves itself in, then allocates four times the cap.
  pid_t child = ::fork();
  if (child == 0) {
    if (!platform::write_self_into(procs.get())) ::_exit(2);
    for (int i = 0; i < 256; ++i) {
      void* block = std::malloc(MiB);
      if (block) std::memset(block, 1, MiB);
    }
    ::_exit(0);
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  REQUIRE(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGKILL);
  CHECK(platform::oom_kill_count(capped) == 1u);
  CHECK(platform::reached_own_limit(capped));
  CHECK(platform::cgroup_processes(capped).empty());

  // Whatever is left in a cgroup is killed before it is removed.
  pid_t sleeper = ::fork();
  if (sleeper == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive a test that aborts
    if (!platform::write_self_into(procs.get())) ::_exit(2);
    for (;;)
      ::pause();
  }
  REQUIRE(procpool::test::eventually(
      [&] { return platform::cgroup_processes(capped) == std::vector<int>{sleeper}; }));
  CHECK_FALSE(platform::remove_cgroup(capped));  // in use
  platform::kill_cgroup_processes(capped);
  REQUIRE(::waitpid(sleeper, &status, 0) == sleeper);
  CHECK((WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL));
  CHECK(platform::child_cgroups(*test_dir) == std::vector<std::string>{"capped"});
  CHECK(platform::remove_cgroup(capped));
  CHECK(platform::child_cgroups(*test_dir).empty());
  CHECK(platform::remove_cgroup(capped));  // gone already: nothing to do
}
