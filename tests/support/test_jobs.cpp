#include "test_jobs.hpp"

#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>

#include "channel/layout.hpp"
#include "process_maps.hpp"
#include "test_support.hpp"

namespace procpool::test {

namespace {

Bytes text_bytes(const std::string& s) {
  const auto* p = reinterpret_cast<const std::byte*>(s.data());
  return Bytes(p, p + s.size());
}

std::string as_text(std::span<const std::byte> in) {
  return std::string(reinterpret_cast<const char*>(in.data()), in.size());
}

template <class T>
T value_of(std::span<const std::byte> in) {
  T value{};
  if (in.size() != sizeof(T)) throw std::runtime_error("bad test payload size");
  std::memcpy(&value, in.data(), sizeof(T));
  return value;
}

[[noreturn]] void hang() {
  for (;;)
    ::pause();
}

// Finds this worker's shared-memory segment the way a corrupt native library might stumble on it:
// through the address space, not through any procpool API.
std::byte* find_segment() {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    if (line.find("/memfd:procpool-segment") == std::string::npos) continue;
    return reinterpret_cast<std::byte*>(std::stoull(line.substr(0, line.find('-')), nullptr, 16));
  }
  throw std::runtime_error("no procpool segment mapped");
}

// Writes something the supervisor must reject into the response ring, wakes the supervisor, and
// hangs so that the runtime never writes the real result.
[[noreturn]] void write_garbage(const std::string& mode, std::uint64_t job_id) {
  std::byte* base = find_segment();
  auto* header = reinterpret_cast<detail::SegmentHeader*>(base);
  detail::RingControl& ring = header->responses;
  std::uint64_t capacity = header->ring_bytes;
  std::byte* data = base + detail::segment_header_bytes + capacity;
  std::uint64_t pos = ring.write_pos.load();
  auto put = [&](const void* src, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) {
      data[(pos + i) & (capacity - 1)] = static_cast<const std::byte*>(src)[i];
    }
  };
  if (mode == "length") {
    detail::RecordHeader h{static_cast<std::uint32_t>(detail::RecordType::result_data), 0xFFFFFFF0u,
                           job_id};
    put(&h, sizeof h);
    ring.write_pos.store(pos + 64);
  } else if (mode == "position") {
    ring.write_pos.store(pos + capacity * 4);
  } else if (mode == "job_id") {
    detail::RecordHeader h{static_cast<std::uint32_t>(detail::RecordType::result_start),
                           sizeof(detail::ResultStartBody), job_id + 1000};
    detail::ResultStartBody body{0, 0, 0};
    put(&h, sizeof h);
    pos += sizeof h;
    put(&body, sizeof body);
    ring.write_pos.store(pos + sizeof body);
  } else if (mode == "random") {
    std::mt19937_64 random(job_id);
    std::byte noise[256];
    for (auto& b : noise)
      b = static_cast<std::byte>(random());
    put(noise, sizeof noise);
    ring.write_pos.store(pos + sizeof noise);
  } else if (mode == "whole_segment") {
    // Noise over everything: the header, both rings' control blocks and both rings' data.
    std::mt19937_64 random(job_id);
    std::uint64_t total = detail::segment_bytes_for(capacity);
    for (std::uint64_t i = 0; i < total; ++i)
      base[i] = static_cast<std::byte>(random());
  } else if (mode == "scribble") {
    // Overwrite the whole control block and ring with noise.
    std::mt19937_64 random(job_id);
    for (std::uint64_t i = 0; i < sizeof(detail::RingControl); ++i) {
      reinterpret_cast<std::byte*>(&ring)[i] = static_cast<std::byte>(random());
    }
  }
  std::uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(3, &one, sizeof one);  // the doorbell
  hang();
}

// Starts a child that ignores the polite signals and waits forever: a native library's helper
// process that nobody told to stop. Returns its pid.
pid_t start_grandchild() {
  pid_t child = ::fork();
  if (child < 0) throw std::runtime_error("fork failed");
  if (child == 0) {
    ::signal(SIGTERM, SIG_IGN);
    ::signal(SIGHUP, SIG_IGN);
    ::signal(SIGINT, SIG_IGN);
    hang();
  }
  return child;
}

// Where in_place_keep_output last found its output buffer: a pointer a native library kept past its
// call.
std::byte* kept_output = nullptr;

// "<permissions> <device> <inode>\n" for each mapping of this process that `keep` selects.
std::string describe_mappings(const std::function<bool(const Mapping&)>& keep) {
  std::string lines;
  for (const Mapping& m : own_mappings()) {
    if (keep(m)) lines += m.permissions + " " + m.device + " " + std::to_string(m.inode) + "\n";
  }
  return lines;
}

// Memory a leaky native library would never give back: allocated, touched so it is resident, kept.
std::vector<std::unique_ptr<char[]>>& leaked_blocks() {
  static std::vector<std::unique_ptr<char[]>> blocks;
  return blocks;
}

void leak_mebibytes(std::uint32_t mib) {
  for (std::uint32_t i = 0; i < mib; ++i) {
    auto block = std::make_unique<char[]>(std::size_t{1} << 20);
    for (std::size_t offset = 0; offset < (std::size_t{1} << 20); offset += 4096)
      block[offset] = 1;
    leaked_blocks().push_back(std::move(block));
  }
}

// Writes all of `data` to `fd`; false once it cannot (the reader went away).
bool write_all(int fd, const char* data, std::size_t size) {
  while (size > 0) {
    const ssize_t n = ::write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

// Allocates `mib` as 64 MiB blocks, each touched whole before the next, and frees them.
void grab_mebibytes(std::uint32_t mib) {
  constexpr std::size_t block_bytes = std::size_t{64} << 20;
  std::vector<std::unique_ptr<char[]>> blocks;
  for (std::size_t left = std::size_t{mib} << 20; left > 0;) {
    const std::size_t bytes = std::min(left, block_bytes);
    blocks.push_back(std::make_unique<char[]>(bytes));
    std::memset(blocks.back().get(), 1, bytes);
    left -= bytes;
  }
}

// Runs on the worker's main thread (where jobs run): in a fork-server worker, the thread the fork
// copied, whose glibc state (its cached thread id, its robust-mutex list) the fork must leave as
// fork() would.
std::string main_thread_note() {
  return ::gettid() == ::getpid() ? "" : " (not on the main thread)";
}

// The pthread_mutex_t in the shared file at `path` (a test's /dev/shm file), mapped shared.
pthread_mutex_t* map_shared_mutex(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error("open " + path + ": " + std::strerror(errno));
  void* mapping =
      ::mmap(nullptr, sizeof(pthread_mutex_t), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ::close(fd);
  if (mapping == MAP_FAILED) throw std::runtime_error("mmap " + path + ": " + std::strerror(errno));
  return static_cast<pthread_mutex_t*>(mapping);
}

// Locks a priority-inheritance mutex on this (the main) thread, has a second thread block on it in
// the kernel (the futex word gets FUTEX_WAITERS), unlocks, and reports both calls' results:
// "unlock=0 waiter=0" when the kernel handed the mutex over. The waiter gives up after 5 s.
std::string pi_mutex_handoff() {
  pthread_mutexattr_t attributes;
  pthread_mutexattr_init(&attributes);
  pthread_mutexattr_setprotocol(&attributes, PTHREAD_PRIO_INHERIT);
  pthread_mutex_t mutex;
  pthread_mutex_init(&mutex, &attributes);
  pthread_mutexattr_destroy(&attributes);
  const int locked = pthread_mutex_lock(&mutex);
  if (locked != 0) return "lock=" + std::to_string(locked);
  std::atomic<int> waiter_result{-1};
  std::thread waiter([&] {
    timespec deadline{};
    ::clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 5;
    const int result = pthread_mutex_timedlock(&mutex, &deadline);
    if (result == 0) pthread_mutex_unlock(&mutex);
    waiter_result.store(result);
  });
  auto* word = reinterpret_cast<std::atomic<unsigned>*>(&mutex.__data.__lock);
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while ((word->load() & FUTEX_WAITERS) == 0 && waiter_result.load() == -1 &&
         std::chrono::steady_clock::now() < give_up) {
    ::sched_yield();
  }
  const bool contended = (word->load() & FUTEX_WAITERS) != 0;
  const int unlocked = pthread_mutex_unlock(&mutex);
  waiter.join();
  pthread_mutex_destroy(&mutex);
  return std::string(contended ? "" : "uncontended ") + "unlock=" + std::to_string(unlocked) +
         " waiter=" + std::to_string(waiter_result.load()) + main_thread_note();
}

// With PROCPOOL_TEST_THREAD_BEFORE_MAIN set, a process of a test binary starts a thread before
// main() runs, as some native libraries' static initialisers do: what a fork server must not fork.
const bool thread_before_main = [] {
  if (std::getenv("PROCPOOL_TEST_THREAD_BEFORE_MAIN") == nullptr) return false;
  std::thread([] {
    for (;;)
      ::pause();
  }).detach();
  return true;
}();

// With PROCPOOL_TEST_SLOW_START_MS set, a process of a test binary takes that many milliseconds
// more to reach main(), as a program with heavy static initialisers does: a fork server (exec'd)
// that cannot answer its first request within a short start_timeout, however fast the machine.
const bool slow_start = [] {
  const char* ms = std::getenv("PROCPOOL_TEST_SLOW_START_MS");
  if (ms == nullptr) return false;
  std::this_thread::sleep_for(std::chrono::milliseconds(std::atoi(ms)));
  return true;
}();

}  // namespace

JobRegistry make_test_registry() {
  JobRegistry jobs;
  jobs.add("echo",
           [](JobContext&, std::span<const std::byte> in) { return Bytes(in.begin(), in.end()); });
  // Owning jobs: the payload is theirs to change and return.
  jobs.add_owning("owning_reverse", [](JobContext&, Bytes payload) {
    std::reverse(payload.begin(), payload.end());
    return payload;
  });
  jobs.add_owning("owning_throw", [](JobContext&, Bytes payload) -> Bytes {
    throw std::runtime_error("owning handler failed on " + std::to_string(payload.size()) +
                             " bytes");
  });
  jobs.add("fail", [](JobContext&, std::span<const std::byte> in) -> Bytes {
    throw std::runtime_error("handler failed: " + as_text(in));
  });
  jobs.add("throw_int", [](JobContext&, std::span<const std::byte>) -> Bytes { throw 42; });
  jobs.add("segv", [](JobContext&, std::span<const std::byte>) -> Bytes {
    ::raise(SIGSEGV);
    hang();
  });
  jobs.add("sigkill", [](JobContext&, std::span<const std::byte>) -> Bytes {
    ::raise(SIGKILL);
    hang();
  });
  jobs.add("abort", [](JobContext&, std::span<const std::byte>) -> Bytes { std::abort(); });
  jobs.add("exit", [](JobContext&, std::span<const std::byte> in) -> Bytes {
    ::_exit(in.empty() ? 3 : static_cast<int>(in[0]));
  });
  jobs.add("hang", [](JobContext&, std::span<const std::byte>) -> Bytes { hang(); });
  jobs.add("hang_ignoring_term", [](JobContext&, std::span<const std::byte>) -> Bytes {
    ::signal(SIGTERM, SIG_IGN);
    hang();
  });
  // Sleeps through a SIGTERM, then returns: a job that outlives its timeout and ends on its own.
  jobs.add("sleep_ms_ignoring_term", [](JobContext&, std::span<const std::byte> in) {
    ::signal(SIGTERM, SIG_IGN);
    std::this_thread::sleep_for(std::chrono::milliseconds(value_of<std::uint32_t>(in)));
    ::signal(SIGTERM, SIG_DFL);
    return Bytes(in.begin(), in.end());
  });
  jobs.add("sleep_ms", [](JobContext&, std::span<const std::byte> in) {
    std::this_thread::sleep_for(std::chrono::milliseconds(value_of<std::uint32_t>(in)));
    return Bytes(in.begin(), in.end());
  });
  // Blocks until the test writes a byte into the FIFO named by the payload: a job the test holds
  // running for exactly as long as it needs, with no sleeps.
  jobs.add("wait_fifo", [](JobContext&, std::span<const std::byte> in) {
    std::ifstream gate(as_text(in), std::ios::binary);
    char released = 0;
    if (!gate.get(released)) throw std::runtime_error("the gate FIFO closed without a byte");
    return text_bytes("released");
  });
  jobs.add("garbage", [](JobContext& context, std::span<const std::byte> in) -> Bytes {
    write_garbage(as_text(in), context.job_id());
  });
  // Unmaps the worker's whole segment, then returns: the runtime faults writing the result.
  jobs.add("unmap_segment", [](JobContext&, std::span<const std::byte>) {
    std::byte* base = find_segment();
    auto* header = reinterpret_cast<detail::SegmentHeader*>(base);
    ::munmap(base, detail::segment_bytes_for(header->ring_bytes));
    return text_bytes("unreachable");
  });
  // Starts a grandchild, names it on stderr (so the test can find it in JobError::worker_stderr)
  // and dies.
  jobs.add("grandchild_then_die", [](JobContext&, std::span<const std::byte>) -> Bytes {
    pid_t child = start_grandchild();
    std::fprintf(stderr, "grandchild %d\n", static_cast<int>(child));
    std::fflush(stderr);
    ::raise(SIGKILL);
    hang();
  });
  // Starts a grandchild that outlives the job and returns "<worker pid> <grandchild pid>".
  jobs.add("spawn_grandchild", [](JobContext&, std::span<const std::byte>) {
    pid_t child = start_grandchild();
    return text_bytes(std::to_string(::getpid()) + " " + std::to_string(child));
  });
  // A helper process that left the worker's process group (setsid), so its guard cannot kill it,
  // and holds none of the worker's descriptors. Returns its pid.
  jobs.add("spawn_escaped_grandchild", [](JobContext&, std::span<const std::byte>) {
    pid_t child = ::fork();
    if (child < 0) throw std::runtime_error("fork failed");
    if (child == 0) {
      ::setsid();
      ::close_range(0, ~0u, 0);
      ::signal(SIGTERM, SIG_IGN);
      ::signal(SIGHUP, SIG_IGN);
      hang();
    }
    return text_bytes(std::to_string(child));
  });
  // Closes its ends of the channel (doorbell, output) and exits cleanly in the middle of a job.
  jobs.add("close_and_exit", [](JobContext&, std::span<const std::byte>) -> Bytes {
    ::close(3);
    ::close(1);
    ::close(2);
    ::_exit(0);
  });
  jobs.add("produce", [](JobContext&, std::span<const std::byte> in) {
    auto n = value_of<std::uint64_t>(in);
    Bytes out(n);
    for (std::uint64_t i = 0; i < n; ++i)
      out[i] = static_cast<std::byte>((i * 31 + 7) & 0xff);
    return out;
  });
  jobs.add("pid", [](JobContext&, std::span<const std::byte>) {
    return text_bytes(std::to_string(::getpid()));
  });
  // How many times this job has run in this process, this call included.
  jobs.add("calls_in_this_process", [](JobContext&, std::span<const std::byte>) {
    static int calls = 0;
    return text_bytes(std::to_string(++calls));
  });
  jobs.add("crash_first_attempt", [](JobContext& context, std::span<const std::byte>) {
    if (context.attempt() == 1) ::raise(SIGKILL);
    return text_bytes("attempt " + std::to_string(context.attempt()));
  });
  jobs.add("timeout_first_attempt", [](JobContext& context, std::span<const std::byte>) {
    if (context.attempt() == 1) hang();
    return text_bytes("attempt " + std::to_string(context.attempt()));
  });
  jobs.add("open_fds", [](JobContext&, std::span<const std::byte>) {
    std::string list;
    for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
      std::error_code ec;
      auto target = std::filesystem::read_symlink(entry.path(), ec);
      if (!ec && target.string().starts_with("/proc/") && target.string().ends_with("/fd"))
        continue;
      list += entry.path().filename().string() + " ";
    }
    return text_bytes(list);
  });
  // Closes the worker's descriptor channel (fd 5): the next in-place job cannot reach it.
  jobs.add("close_channel", [](JobContext&, std::span<const std::byte>) {
    ::close(5);
    return Bytes{};
  });
  // In-place jobs (Pool::submit_in_place).
  jobs.add_in_place("in_place_copy",
                    [](JobContext&, std::span<const std::byte> in, std::span<std::byte> out) {
                      std::size_t n = std::min(in.size(), out.size());
                      std::memcpy(out.data(), in.data(), n);
                      return n;
                    });
  jobs.add_in_place("in_place_overclaim", [](JobContext&, std::span<const std::byte>,
                                             std::span<std::byte> out) { return out.size() + 1; });
  jobs.add_in_place("in_place_write_input",
                    [](JobContext&, std::span<const std::byte> in, std::span<std::byte>) {
                      // The input is mapped read-only: this faults.
                      const_cast<std::byte&>(in[0]) = std::byte{0};
                      return std::size_t{0};
                    });
  jobs.add_in_place(
      "in_place_crash_first_attempt",
      [](JobContext& context, std::span<const std::byte> in, std::span<std::byte> out) {
        std::size_t n = std::min(in.size(), out.size());
        std::memcpy(out.data(), in.data(), n / 2);  // half written, then the crash
        if (context.attempt() == 1) std::abort();
        std::memcpy(out.data(), in.data(), n);
        return n;
      });
  jobs.add_in_place(
      "in_place_throw",
      [](JobContext&, std::span<const std::byte>, std::span<std::byte>) -> std::size_t {
        throw std::runtime_error("the in-place handler failed");
      });
  // in_place_copy, keeping a pointer to its output for write_kept_output.
  jobs.add_in_place("in_place_keep_output",
                    [](JobContext&, std::span<const std::byte> in, std::span<std::byte> out) {
                      std::size_t n = std::min(in.size(), out.size());
                      std::memcpy(out.data(), in.data(), n);
                      kept_output = out.data();
                      return n;
                    });
  // Writes its payload's one byte where in_place_keep_output found its output, after that job.
  jobs.add("write_kept_output", [](JobContext&, std::span<const std::byte> in) {
    if (kept_output == nullptr || in.size() != 1) {
      throw std::runtime_error("no output pointer kept in this worker, or not one byte to write");
    }
    *kept_output = in[0];
    return text_bytes("written");
  });
  // "<permissions> <device> <inode>" per line, for each mapping of a lent buffer in this worker.
  jobs.add("lent_mappings", [](JobContext&, std::span<const std::byte>) {
    return text_bytes(describe_mappings(
        [](const Mapping& m) { return m.path.find("/memfd:procpool-lent") != std::string::npos; }));
  });
  // The same, written into its output, for every mapping in this worker of the buffer its input
  // lies in, while it runs.
  jobs.add_in_place("in_place_input_mappings",
                    [](JobContext&, std::span<const std::byte> in, std::span<std::byte> out) {
                      const Mapping input = own_mapping_of(in.data());
                      const std::string lines = describe_mappings([&](const Mapping& m) {
                        return m.device == input.device && m.inode == input.inode;
                      });
                      if (lines.size() > out.size())
                        throw std::runtime_error("the output is too small");
                      std::memcpy(out.data(), lines.data(), lines.size());
                      return lines.size();
                    });
  // The worker's whole environment, one "NAME=value" per line.
  jobs.add("environ", [](JobContext&, std::span<const std::byte>) {
    std::string list;
    for (char** entry = environ; *entry; ++entry)
      list += std::string(*entry) + "\n";
    return text_bytes(list);
  });
  // "<soft> <hard>" of RLIMIT_NOFILE, RLIMIT_CORE and RLIMIT_AS, one line each ("inf" = none).
  jobs.add("rlimits", [](JobContext&, std::span<const std::byte>) {
    auto show = [](rlim_t value) {
      return value == RLIM_INFINITY ? std::string("inf") : std::to_string(value);
    };
    std::string out;
    for (int resource : {RLIMIT_NOFILE, RLIMIT_CORE, RLIMIT_AS}) {
      rlimit limit{};
      ::getrlimit(resource, &limit);
      out += show(limit.rlim_cur) + " " + show(limit.rlim_max) + "\n";
    }
    return text_bytes(out);
  });
  // "uid=<r>/<e>/<s> gid=<r>/<e>/<s> groups=<n> no_new_privs=<0|1> dumpable=<0|1>".
  jobs.add("credentials", [](JobContext&, std::span<const std::byte>) {
    uid_t ruid = 0, euid = 0, suid = 0;
    gid_t rgid = 0, egid = 0, sgid = 0;
    ::getresuid(&ruid, &euid, &suid);
    ::getresgid(&rgid, &egid, &sgid);
    return text_bytes("uid=" + std::to_string(ruid) + "/" + std::to_string(euid) + "/" +
                      std::to_string(suid) + " gid=" + std::to_string(rgid) + "/" +
                      std::to_string(egid) + "/" + std::to_string(sgid) +
                      " groups=" + std::to_string(::getgroups(0, nullptr)) +
                      " no_new_privs=" + std::to_string(::prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0)) +
                      " dumpable=" + std::to_string(::prctl(PR_GET_DUMPABLE, 0, 0, 0, 0)));
  });
  // Changes the worker's group ids to the payload's gid, as a native SDK dropping privileges
  // would (as root), and returns "<pid> <parent-death signal after the change>": the kernel clears
  // that signal on a change of the effective gid.
  jobs.add("change_gid", [](JobContext&, std::span<const std::byte> in) {
    const auto gid = static_cast<gid_t>(value_of<std::uint32_t>(in));
    if (::setresgid(gid, gid, gid) != 0) {
      throw std::runtime_error(std::string("setresgid: ") + std::strerror(errno));
    }
    int signal = -1;
    ::prctl(PR_GET_PDEATHSIG, &signal);
    return text_bytes(std::to_string(::getpid()) + " " + std::to_string(signal));
  });
  // Waits (up to a minute) until this worker's parent is gone, then returns a MiB: a result that
  // fills the response ring with nobody left to read it.
  jobs.add("result_after_host_death", [](JobContext&, std::span<const std::byte>) {
    const pid_t host = ::getppid();
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::minutes(1);
    while (::getppid() == host) {
      if (std::chrono::steady_clock::now() > give_up) throw std::runtime_error("the host lives on");
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return Bytes(std::size_t{1} << 20, std::byte{0x42});
  });
  jobs.add("stderr_then_exit", [](JobContext&, std::span<const std::byte>) -> Bytes {
    std::fprintf(stderr, "first line\nlast words before exit\n");
    std::fflush(stderr);
    ::_exit(9);
  });
  jobs.add("context", [](JobContext& context, std::span<const std::byte>) {
    return text_bytes(std::string(context.job_name()) +
                      " attempt=" + std::to_string(context.attempt()) +
                      " done=" + std::to_string(context.jobs_done_by_worker()) +
                      " deadline=" + (context.deadline() ? "yes" : "no"));
  });
  // Cancelling a running job: each creates the file its payload names once it runs, so that a
  // test knows the job started. The first polls JobContext::stop_requested() as a handler that
  // honours CancelMode::interrupt does; the second never looks.
  jobs.add("until_stop_requested", [](JobContext& context, std::span<const std::byte> in) {
    std::ofstream(as_text(in)).put('1');
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::minutes(1);
    while (!context.stop_requested()) {
      if (std::chrono::steady_clock::now() > give_up) return text_bytes("never asked to stop");
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return text_bytes("stopped");
  });
  jobs.add("mark_then_hang", [](JobContext&, std::span<const std::byte> in) -> Bytes {
    std::ofstream(as_text(in)).put('1');
    hang();
  });
  jobs.add("stop_requested", [](JobContext& context, std::span<const std::byte>) {
    return text_bytes(context.stop_requested() ? "yes" : "no");
  });
  jobs.add("leak_mb", [](JobContext& context, std::span<const std::byte> in) {
    leak_mebibytes(value_of<std::uint32_t>(in));
    return text_bytes(std::to_string(::getpid()) + " " +
                      std::to_string(context.jobs_done_by_worker()));
  });
  // Writes the payload's number of "y" lines to stdout (0: for ever), in 64 KiB writes.
  jobs.add("flood_output", [](JobContext&, std::span<const std::byte> in) {
    const std::uint32_t lines = value_of<std::uint32_t>(in);
    std::string chunk;
    for (int i = 0; i < 32 * 1024; ++i)
      chunk += "y\n";
    for (std::uint64_t left = lines; lines == 0 || left > 0;) {
      const std::uint64_t now = lines == 0 ? 32 * 1024 : std::min<std::uint64_t>(left, 32 * 1024);
      if (!write_all(1, chunk.data(), now * 2)) throw std::runtime_error("stdout closed");
      left -= lines == 0 ? 0 : now;
    }
    return text_bytes("flooded");
  });
  // Starts a grandchild that leaves the worker's process group and writes to the worker's stdout
  // for ever, writes its pid into the file the payload names, and exits: a dead worker whose pipe
  // never ends.
  jobs.add("escaped_writer_then_exit", [](JobContext&, std::span<const std::byte> in) -> Bytes {
    pid_t child = ::fork();
    if (child < 0) throw std::runtime_error("fork failed");
    if (child == 0) {
      ::setsid();
      std::string chunk;
      for (int i = 0; i < 32 * 1024; ++i)
        chunk += "z\n";
      for (;;)
        if (!write_all(1, chunk.data(), chunk.size())) ::_exit(0);
    }
    std::ofstream(as_text(in)) << child;
    ::_exit(3);
  });
  // Leaks the MiB the payload ("<MiB> <fifo>") names, then waits as wait_fifo does on the FIFO.
  jobs.add("leak_mb_wait_fifo", [](JobContext&, std::span<const std::byte> in) {
    std::istringstream words(as_text(in));
    std::uint32_t mib = 0;
    std::string fifo;
    if (!(words >> mib >> fifo)) throw std::runtime_error("payload: <MiB> <fifo path>");
    leak_mebibytes(mib);
    std::ifstream gate(fifo, std::ios::binary);
    char released = 0;
    if (!gate.get(released)) throw std::runtime_error("the gate FIFO closed without a byte");
    return text_bytes("released");
  });
  // Grows by 8 MiB every 5 ms up to the payload's MiB, then holds: a job that balloons mid-run.
  jobs.add("balloon_mb", [](JobContext&, std::span<const std::byte> in) -> Bytes {
    std::uint32_t target = value_of<std::uint32_t>(in);
    for (std::uint32_t done = 0; done < target; done += 8) {
      leak_mebibytes(8);
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    hang();
  });
  // Leaks the payload's MiB, lingers long enough to be sampled, then dies: a retiring worker
  // crashing.
  jobs.add("leak_then_crash", [](JobContext&, std::span<const std::byte> in) -> Bytes {
    leak_mebibytes(value_of<std::uint32_t>(in));
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    ::raise(SIGKILL);
    hang();
  });
  // Allocates the payload's MiB as 64 MiB blocks, each touched whole before the next, and gives
  // them back at the end: a native call whose working set outruns any sampling period.
  jobs.add("grab_mb", [](JobContext&, std::span<const std::byte> in) {
    grab_mebibytes(value_of<std::uint32_t>(in));
    return text_bytes("allocated");
  });
  // grab_mb on its first attempt only: a retried job that succeeds once its worker is replaced.
  jobs.add("grab_mb_first_attempt", [](JobContext& context, std::span<const std::byte> in) {
    if (context.attempt() == 1) grab_mebibytes(value_of<std::uint32_t>(in));
    return text_bytes("attempt " + std::to_string(context.attempt()));
  });
  // What this worker's job sees as its OOM score adjustment.
  jobs.add("oom_score_adj", [](JobContext&, std::span<const std::byte>) {
    std::ifstream in("/proc/self/oom_score_adj");
    std::string value;
    in >> value;
    return text_bytes(value);
  });
  jobs.add("alloc_mb", [](JobContext&, std::span<const std::byte> in) {
    std::size_t bytes = std::size_t{value_of<std::uint32_t>(in)} << 20;
    std::vector<char> block(bytes);  // throws std::bad_alloc past RLIMIT_AS
    for (std::size_t offset = 0; offset < bytes; offset += 4096)
      block[offset] = 1;
    return text_bytes("allocated");
  });
  // glibc's idea of this thread's id (the owner it records in a mutex it locks) and the kernel's:
  // "<owner> <gettid>".
  jobs.add("glibc_tid", [](JobContext&, std::span<const std::byte>) {
    pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&mutex);
    const int owner = mutex.__data.__owner;
    pthread_mutex_unlock(&mutex);
    return text_bytes(std::to_string(owner) + " " + std::to_string(::gettid()) +
                      main_thread_note());
  });
  // Locks the process-shared robust mutex in the file named by the payload and exits (code 7)
  // holding it: the kernel must mark it for the next locker (EOWNERDEAD).
  jobs.add("lock_robust_and_exit", [](JobContext&, std::span<const std::byte> in) -> Bytes {
    pthread_mutex_t* mutex = map_shared_mutex(as_text(in));
    if (int error = pthread_mutex_lock(mutex)) {
      throw std::runtime_error("pthread_mutex_lock: " + std::string(std::strerror(error)));
    }
    ::_exit(7);
  });
  jobs.add("pi_mutex_handoff",
           [](JobContext&, std::span<const std::byte>) { return text_bytes(pi_mutex_handoff()); });
  return jobs;
}

}  // namespace procpool::test
