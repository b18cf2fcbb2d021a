// The platform seam on Linux: spawning through Boost.Process, descriptors handed to the child,
// pidfd readiness, reaping, and futex/eventfd wake-ups.
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fcntl.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "catch.hpp"
#include "platform/platform.hpp"
#include "test_support.hpp"

using namespace procpool;
using namespace std::chrono_literals;

namespace {

std::atomic<int> atexit_calls{0};
void count_atexit() {
  atexit_calls.fetch_add(1);
}

struct Child {
  platform::SpawnedProcess process;
  platform::Pipe output;
  platform::UniqueFd doorbell;
};

// Spawns `exe`; the doorbell is a fresh eventfd unless `doorbell_fd` names one.
Child start(const std::string& exe, std::vector<std::string> args, int doorbell_fd = -1,
            int segment_fd = -1, int channel_fd = -1) {
  Child child;
  child.output = platform::make_pipe();
  if (doorbell_fd < 0) {
    child.doorbell = platform::make_eventfd();
    doorbell_fd = child.doorbell.get();
  }
  platform::SpawnRequest request{exe,         std::move(args), child.output.write_end.get(),
                                 doorbell_fd, segment_fd,      channel_fd};
  child.process = platform::spawn(request);
  child.output.write_end.reset();
  return child;
}

// What a child printed with "readlink <links>; exec ls /proc/self/fd": the link targets, then the
// descriptors it had open.
struct FdListing {
  std::vector<std::string> targets;
  std::set<int> fds;
  std::string output;  // as printed, for failure messages
};

FdListing parse_listing(const std::string& out, std::size_t links) {
  FdListing listing;
  listing.output = out;
  std::istringstream lines(out);
  std::string line;
  for (std::size_t i = 0; i < links && std::getline(lines, line); ++i)
    listing.targets.push_back(line);
  while (std::getline(lines, line))
    listing.fds.insert(std::stoi(line));
  return listing;
}

platform::ExitStatus wait_exit(Child& child) {
  platform::Poller poller;
  poller.add(child.process.pidfd.get(), 1);
  std::vector<std::uint64_t> ready;
  poller.wait(std::chrono::milliseconds(10'000), ready);
  REQUIRE(ready == std::vector<std::uint64_t>{1});
  auto status = platform::try_reap(child.process.pid);
  REQUIRE(status.has_value());
  return *status;
}

std::string read_all(int fd) {
  std::string out;
  char buffer[512];
  platform::Poller poller;
  poller.add(fd, 1);
  for (;;) {
    std::vector<std::uint64_t> ready;
    poller.wait(std::chrono::milliseconds(10'000), ready);
    REQUIRE_FALSE(ready.empty());
    auto n = platform::read_some(fd, buffer, sizeof buffer);
    if (!n) continue;
    if (*n == 0) return out;
    out.append(buffer, *n);
  }
}

// Spawns a shell (with the given descriptors) that prints where its descriptors `links` point,
// then lists its open descriptors; checks that it exits 0.
FdListing list_child_descriptors(const std::vector<int>& links, int doorbell_fd = -1,
                                 int segment_fd = -1, int channel_fd = -1) {
  std::string script = "readlink";
  for (int fd : links)
    script += " /proc/$$/fd/" + std::to_string(fd);
  script += "; exec ls /proc/self/fd";
  Child child = start("/bin/sh", {"-c", script}, doorbell_fd, segment_fd, channel_fd);
  std::string out = read_all(child.output.read_end.get());
  CHECK(wait_exit(child).exit_code == 0);
  return parse_listing(out, links.size());
}

}  // namespace

TEST_CASE("a spawned child's exit is seen through its pidfd and reaped with its status") {
  Child ok = start("/bin/sh", {"-c", "exit 0"});
  CHECK(wait_exit(ok).exit_code == 0);
  Child failing = start("/bin/sh", {"-c", "exit 7"});
  CHECK(wait_exit(failing).exit_code == 7);
  Child killed = start("/bin/sh", {"-c", "kill -9 $$"});
  auto status = wait_exit(killed);
  CHECK_FALSE(status.exit_code.has_value());
  CHECK(status.signal == SIGKILL);
  CHECK(test::zombie_children(::getpid()).empty());
}

TEST_CASE("a child inherits exactly stdin, stdout/stderr and the doorbell at fd 3") {
  // A descriptor the child must NOT see, deliberately without close-on-exec: Boost's launcher
  // closes everything but the whitelist in the child.
  int leaky = ::fcntl(1, F_DUPFD, 50);
  REQUIRE(leaky >= 50);
  FdListing listing = list_child_descriptors({0, 3});
  ::close(leaky);
  INFO(listing.output);
  CHECK(listing.targets == std::vector<std::string>{"/dev/null", "anon_inode:[eventfd]"});
  // ls itself opens one descriptor (4) to read the directory.
  CHECK(listing.fds == std::set<int>{0, 1, 2, 3, 4});
}

TEST_CASE(
    "a segment descriptor is inherited at fd 4, even when the sources sit on 3 and 4 swapped") {
  // The worst case for placing descriptors: the segment's source is the doorbell's target and the
  // doorbell's source the segment's. Build it only where 3 and 4 are free in this process.
  if (::fcntl(3, F_GETFD) != -1 || ::fcntl(4, F_GETFD) != -1) {
    WARN("descriptors 3 and 4 are in use in this test process: the swap case cannot be set up");
    return;
  }
  // New descriptors take the lowest free numbers.
  platform::UniqueFd segment_on_3 = platform::make_shared_memory(4096, "procpool-segment");
  platform::UniqueFd doorbell_on_4 = platform::make_eventfd();
  REQUIRE(segment_on_3.get() == 3);
  REQUIRE(doorbell_on_4.get() == 4);
  FdListing listing = list_child_descriptors({3, 4}, doorbell_on_4.get(), segment_on_3.get());
  INFO(listing.output);
  REQUIRE(listing.targets.size() == 2);
  CHECK(listing.targets[0] == "anon_inode:[eventfd]");
  CHECK(listing.targets[1].starts_with("/memfd:procpool-segment"));
  // ls itself opens one descriptor (5) to read the directory.
  CHECK(listing.fds == std::set<int>{0, 1, 2, 3, 4, 5});
}

TEST_CASE("doorbell, segment and channel land on 3, 4 and 5 when their sources are rotated") {
  // Each source sits on another's target: the segment on 3 (the doorbell's), the channel on 4
  // (the segment's); the doorbell is above them all.
  for (int fd = 3; fd <= 6; ++fd) {
    if (::fcntl(fd, F_GETFD) != -1) {
      WARN("descriptors 3 to 6 are in use in this test process: the rotation cannot be set up");
      return;
    }
  }
  platform::UniqueFd segment_on_3 = platform::make_shared_memory(4096, "procpool-segment");
  platform::DescriptorChannel channel = platform::make_descriptor_channel();  // 4 and 5
  platform::UniqueFd doorbell_on_6 = platform::make_eventfd();
  REQUIRE(segment_on_3.get() == 3);
  REQUIRE(channel.host_end.get() == 4);
  REQUIRE(doorbell_on_6.get() == 6);
  FdListing listing = list_child_descriptors({3, 4, 5}, doorbell_on_6.get(), segment_on_3.get(),
                                             channel.host_end.get());
  INFO(listing.output);
  REQUIRE(listing.targets.size() == 3);
  CHECK(listing.targets[0] == "anon_inode:[eventfd]");
  CHECK(listing.targets[1].starts_with("/memfd:procpool-segment"));
  CHECK(listing.targets[2].starts_with("socket:"));
  // ls itself opens one descriptor (6) to read the directory.
  CHECK(listing.fds == std::set<int>{0, 1, 2, 3, 4, 5, 6});
}

TEST_CASE(
    "a program that cannot be executed fails the spawn cleanly, without running the host's exit "
    "handlers") {
  static bool registered = (std::atexit(count_atexit), true);
  (void)registered;
  int before = atexit_calls.load();
  try {
    Child child = start("/nonexistent/procpool-worker", {});
#if defined(__SANITIZE_THREAD__)
    // ThreadSanitizer turns vfork into fork, so the child's exec error cannot reach the parent: it
    // shows as the child exiting 127, which the pool treats as a failed start.
    CHECK(wait_exit(child).exit_code == 127);
#else
    FAIL("spawn of a missing program did not throw");
#endif
  } catch (const std::system_error& e) {
    CHECK(std::string(e.what()).find("/nonexistent/procpool-worker") != std::string::npos);
  }
  // Had the vfork child run exit(), it would have run our atexit handler in our own memory.
  CHECK(atexit_calls.load() == before);
  CHECK(test::zombie_children(::getpid()).empty());
}

namespace {

// The pid of the last process that ran marker_handler, 0 if none did. A vfork child shares this
// memory with the test, so a run in the child shows here with the child's pid.
std::atomic<int> marker_ran_in{0};
void marker_handler(int) {
  marker_ran_in.store(static_cast<int>(::getpid()));
}

constexpr std::uint64_t signal_bit(int signal) {
  return std::uint64_t{1} << (signal - 1);
}

// A signal mask field ("SigBlk", "SigCgt", ...) of a /proc status file; nullopt if unreadable.
std::optional<std::uint64_t> status_mask(const std::string& path, const std::string& field) {
  std::ifstream file(path);
  for (std::string line; std::getline(file, line);) {
    if (!line.starts_with(field + ":")) continue;
    return std::stoull(line.substr(field.size() + 1), nullptr, 16);
  }
  return std::nullopt;
}

// The state letter of /proc/<pid>/stat ('S': asleep), or 0.
char process_state(int pid) {
  std::ifstream file("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  const auto end_of_name = stat.rfind(')');
  return end_of_name == std::string::npos || end_of_name + 2 >= stat.size() ? 0
                                                                            : stat[end_of_name + 2];
}

}  // namespace

TEST_CASE(
    "between vfork and exec the child runs none of the host's signal handlers, and the launching "
    "thread takes no signal") {
#if defined(PROCPOOL_TEST_TSAN)
  WARN("ThreadSanitizer turns vfork into fork: the launching thread does not wait for the exec");
  return;
#endif
  // SIGURG: its default action is to ignore it, so the exec goes on once the child takes it.
  struct sigaction marker {};
  marker.sa_handler = marker_handler;
  sigemptyset(&marker.sa_mask);
  marker.sa_flags = SA_RESTART;
  struct sigaction previous {};
  REQUIRE(::sigaction(SIGURG, &marker, &previous) == 0);
  marker_ran_in = 0;

  // Holds the child between vfork and exec: its first restriction writes to cgroup_procs_fd,
  // here a full pipe, and waits there until the test drains it.
  platform::Pipe hold = platform::make_pipe();
  const int write_end = hold.write_end.get();
  REQUIRE(::fcntl(write_end, F_SETFL, ::fcntl(write_end, F_GETFL) | O_NONBLOCK) == 0);
  static const char page[4096] = {};
  while (::write(write_end, page, sizeof page) > 0) {
  }
  while (::write(write_end, page, 1) > 0) {
  }
  REQUIRE(::fcntl(write_end, F_SETFL, ::fcntl(write_end, F_GETFL) & ~O_NONBLOCK) == 0);

  platform::UniqueFd doorbell = platform::make_eventfd();
  std::atomic<int> launcher_tid{0};
  std::optional<platform::SpawnedProcess> launched;
  std::string launch_error;
  bool mask_kept = false;
  std::thread launcher([&] {
    // The kernel fills only the first 8 bytes of a sigset_t: the rest must be equal too.
    sigset_t before, after;
    sigemptyset(&before);
    sigemptyset(&after);
    ::pthread_sigmask(SIG_SETMASK, nullptr, &before);
    launcher_tid = static_cast<int>(::gettid());
    platform::SpawnRequest request{"/bin/sh", {"-c", "exit 0"}, -1, doorbell.get()};
    request.cgroup_procs_fd = write_end;
    try {
      launched = platform::spawn(request);
    } catch (const std::exception& e) {
      launch_error = e.what();
    }
    ::pthread_sigmask(SIG_SETMASK, nullptr, &after);
    mask_kept = std::memcmp(&before, &after, sizeof before) == 0;
  });

  // The child: the launching thread's only child, asleep in its write.
  int child = 0;
  const bool held = test::eventually([&] {
    const int tid = launcher_tid.load();
    if (tid == 0) return false;
    std::ifstream children("/proc/self/task/" + std::to_string(tid) + "/children");
    return static_cast<bool>(children >> child) && process_state(child) == 'S';
  });
  if (held) {
    const std::string child_status = "/proc/" + std::to_string(child) + "/status";
    const std::string launcher_status =
        "/proc/self/task/" + std::to_string(launcher_tid.load()) + "/status";
    const std::uint64_t host_signals =
        signal_bit(SIGINT) | signal_bit(SIGTERM) | signal_bit(SIGURG) | signal_bit(SIGUSR1);
    // While the child runs on the host's memory, the thread that launched it takes no signal...
    CHECK((status_mask(launcher_status, "SigBlk").value_or(0) & host_signals) == host_signals);
    // ... and the child has none of the host's handlers (SIGURG's here, Catch2's for SIGINT and
    // SIGTERM), and takes no signal until just before exec.
    CHECK((status_mask(child_status, "SigCgt").value_or(~0ull) & host_signals) == 0);
    CHECK((status_mask(child_status, "SigBlk").value_or(0) & host_signals) == host_signals);
    // A signal sent to the child now waits (pending) and never runs the host's handler there.
    CHECK(::kill(child, SIGURG) == 0);
    CHECK(test::eventually([&] {
      const std::uint64_t pending = status_mask(child_status, "ShdPnd").value_or(0) |
                                    status_mask(child_status, "SigPnd").value_or(0);
      return (pending & signal_bit(SIGURG)) != 0 || marker_ran_in.load() == child;
    }));
    CHECK(marker_ran_in.load() != child);
  }
  char drained[4096];
  while (::read(hold.read_end.get(), drained, sizeof drained) > 0) {
  }
  launcher.join();
  ::sigaction(SIGURG, &previous, nullptr);
  REQUIRE(held);
  INFO(launch_error);
  REQUIRE(launched);
  CHECK(mask_kept);
  // The child took the signal once its mask was back, with SIGURG's default action (ignore).
  Child exited{std::move(*launched), {}, {}};
  CHECK(wait_exit(exited).exit_code == 0);
  CHECK(marker_ran_in.load() != child);
}

TEST_CASE("a futex waiter wakes when the word changes, and not before") {
  std::atomic<std::uint32_t> word{0};
  std::atomic<bool> woke{false};
  std::thread waiter([&] {
    while (word.load() == 0)
      platform::futex_wait(word, 0);
    woke = true;
  });
  word.store(1);
  platform::futex_wake_all(word);
  waiter.join();
  CHECK(woke.load());
  // A wait on a value that already differs returns at once.
  platform::futex_wait(word, 0);
  // A wait with a timeout returns when it expires.
  auto start_time = std::chrono::steady_clock::now();
  platform::futex_wait(word, 1, std::chrono::milliseconds(20));
  CHECK(std::chrono::steady_clock::now() - start_time >= 15ms);
}

TEST_CASE("an eventfd wakes a poller, and draining it resets it") {
  platform::UniqueFd fd = platform::make_eventfd();
  platform::Poller poller;
  poller.add(fd.get(), 42);
  std::vector<std::uint64_t> ready;
  poller.wait(std::chrono::milliseconds(0), ready);
  CHECK(ready.empty());
  platform::eventfd_notify(fd.get());
  platform::eventfd_notify(fd.get());
  poller.wait(std::chrono::milliseconds(1000), ready);
  CHECK(ready == std::vector<std::uint64_t>{42});
  platform::eventfd_drain(fd.get());
  ready.clear();
  poller.wait(std::chrono::milliseconds(0), ready);
  CHECK(ready.empty());
}

TEST_CASE("signal names are readable") {
  CHECK(platform::signal_name(SIGSEGV) == "SIGSEGV");
  CHECK(platform::signal_name(SIGKILL) == "SIGKILL");
}

TEST_CASE("current_cpu names the CPU a thread pinned to one CPU runs on") {
  // In a thread of its own, so the test's affinity is untouched.
  std::thread([] {
    cpu_set_t allowed;
    CPU_ZERO(&allowed);
    REQUIRE(::sched_getaffinity(0, sizeof allowed, &allowed) == 0);
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
      if (!CPU_ISSET(cpu, &allowed)) continue;
      cpu_set_t one;
      CPU_ZERO(&one);
      CPU_SET(cpu, &one);
      REQUIRE(::sched_setaffinity(0, sizeof one, &one) == 0);
      CHECK(platform::current_cpu() == cpu);
    }
  }).join();
}

TEST_CASE("involuntary_switches counts a yield that ran another thread on the same CPU") {
  std::thread([] {
    test::PinnedToOneCpu pinned;  // the peer inherits it
    std::atomic<bool> stop{false};
    std::thread peer([&] {
      while (!stop.load())
        platform::yield_cpu();
    });
    std::optional<std::uint64_t> before = platform::involuntary_switches();
    REQUIRE(before);
    for (int i = 0; i < 100; ++i)
      platform::yield_cpu();
    std::optional<std::uint64_t> after = platform::involuntary_switches();
    stop = true;
    peer.join();
    REQUIRE(after);
    CHECK(*after >= *before + 50);  // each yield ran the peer, give or take its start
  }).join();
}

TEST_CASE("RssReader reads a process's resident memory, and nothing once it is gone") {
  platform::RssReader self(::getpid());
  const std::optional<std::uint64_t> before = self.read();
  REQUIRE(before);
  CHECK(*before > 0);
  constexpr std::size_t touched = std::size_t{64} << 20;
  std::vector<char> block(touched, 1);  // every page written
  const std::optional<std::uint64_t> after = self.read();
  REQUIRE(after);
  CHECK(*after >= *before + touched - (std::size_t{4} << 20));
  CHECK(block.back() == 1);

  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) ::_exit(0);
  platform::RssReader gone(child);
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  CHECK_FALSE(gone.read());
}

TEST_CASE("an RssReader that cannot open its file says so rather than reading nothing") {
  // A process that has used up its descriptors (EMFILE): in a child, so the runner keeps its own.
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    int lowest_free = ::dup(0);
    if (lowest_free < 0) ::_exit(2);
    ::close(lowest_free);
    const rlimit none_left{static_cast<rlim_t>(lowest_free), static_cast<rlim_t>(lowest_free)};
    if (::setrlimit(RLIMIT_NOFILE, &none_left) != 0) ::_exit(3);
    try {
      platform::RssReader reader(::getpid());
      ::_exit(1);  // it opened nothing, and said nothing
    } catch (const std::system_error& e) {
      ::_exit(e.code().value() == EMFILE ? 0 : 4);
    }
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("usable_cpus counts the CPUs the calling thread may run on") {
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  REQUIRE(::sched_getaffinity(0, sizeof allowed, &allowed) == 0);
  CHECK(platform::usable_cpus() == static_cast<std::size_t>(CPU_COUNT(&allowed)));
  std::thread([] {
    test::PinnedToOneCpu pinned;
    CHECK(platform::usable_cpus() == 1);
  }).join();
}

TEST_CASE("fork_generation counts the fork() calls between a process and the one it watched") {
  const std::uint64_t here = platform::watch_forks();
  CHECK(platform::watch_forks() == here);  // registered once: a second call counts nothing more
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    // The child's grandchild counts one more; exit codes carry what each saw.
    if (platform::fork_generation() != here + 1) ::_exit(1);
    const pid_t grandchild = ::fork();
    if (grandchild < 0) ::_exit(2);
    if (grandchild == 0) ::_exit(platform::fork_generation() == here + 2 ? 0 : 1);
    int status = 0;
    if (::waitpid(grandchild, &status, 0) != grandchild) ::_exit(2);
    ::_exit(WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 3);
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);             // 1: the child miscounted, 3: the grandchild did
  CHECK(platform::fork_generation() == here);  // the parent's count does not change
}
