// OomAttribution: whether a SIGKILL procpool did not send was the kernel's OOM killer's, from
// counters laid out as the kernel shows them: each counted kill explains one death, kills before
// the pool explain none, a worker's own cgroup decides alone, and no counter means "unknown".
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "catch.hpp"
#include "oom_attribution.hpp"

using namespace procpool;
using detail::CgroupOomReading;
using detail::OomAttribution;
using detail::OomFinding;
using Verdict = OomFinding::Verdict;

namespace {

/// A host memory cgroup (v1 files) in a temporary directory.
class FakeHostCgroup {
 public:
  FakeHostCgroup() {
    static int counter = 0;
    dir_ = std::filesystem::temp_directory_path() /
           ("procpool-fake-oom-" + std::to_string(::getpid()) + "-" + std::to_string(++counter));
    std::filesystem::create_directories(dir_);
    set_limit(640 << 20);
    set_oom_kills(3);  // before the pool
  }
  ~FakeHostCgroup() {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
  void set_oom_kills(int n) {
    std::ofstream(dir_ / "memory.oom_control")
        << "oom_kill_disable 0\nunder_oom 0\noom_kill " << n << "\n";
  }
  void set_limit(std::uint64_t bytes) {
    std::ofstream(dir_ / "memory.limit_in_bytes") << bytes << "\n";
  }
  void remove_counter() { std::filesystem::remove(dir_ / "memory.oom_control"); }
  platform::MemoryCgroup cgroup() const {
    return {platform::CgroupVersion::v1, dir_.string(), dir_.string()};
  }
  std::string directory() const { return dir_.string(); }

 private:
  std::filesystem::path dir_;
};

}  // namespace

TEST_CASE("each OOM kill the host's cgroup counts explains one death, after the pool started") {
  FakeHostCgroup host;
  OomAttribution attribution(host.cgroup());
  CHECK(attribution.explain(std::nullopt).verdict == Verdict::not_counted);  // 3 were before
  host.set_oom_kills(5);  // two workers killed in one OOM
  OomFinding first = attribution.explain(std::nullopt);
  CHECK(first.verdict == Verdict::oom_killer);
  CHECK(first.limit == "the memory cgroup " + host.directory() + " reached its limit of 640.0 MiB");
  CHECK(attribution.explain(std::nullopt).verdict == Verdict::oom_killer);
  // A third death with no third kill: another process's SIGKILL.
  CHECK(attribution.explain(std::nullopt).verdict == Verdict::not_counted);
  // A host with no limit of its own (nor above it): the machine ran out.
  host.set_limit(9223372036854771712ull);
  host.set_oom_kills(6);
  CHECK(attribution.explain(std::nullopt).limit.find("the machine ran out of memory") == 0);
  // A counter that cannot be read any more tells nothing.
  host.remove_counter();
  CHECK(attribution.explain(std::nullopt).verdict == Verdict::unknown);
}

TEST_CASE("a worker's own memory cgroup decides alone, and says whether its cap was reached") {
  FakeHostCgroup host;
  OomAttribution attribution(host.cgroup());
  host.set_oom_kills(10);  // the host's counter is not looked at for a worker with its own
  CgroupOomReading own{"/sys/fs/cgroup/x/worker-7", 0, false, 256 << 20};
  CHECK(attribution.explain(own).verdict == Verdict::not_counted);
  own.oom_kills = 1;
  own.reached_cap = true;
  OomFinding capped = attribution.explain(own);
  CHECK(capped.verdict == Verdict::oom_killer);
  CHECK(capped.limit == "its memory cgroup /sys/fs/cgroup/x/worker-7 reached its cap of 256.0 MiB");
  own.reached_cap = false;  // killed for a limit above it: the host's
  CHECK(attribution.explain(own).limit ==
        "the memory cgroup " + host.directory() + " reached its limit of 640.0 MiB");
}
