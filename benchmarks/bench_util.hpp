// Helpers shared by the benchmark harness: clocks, percentiles, CPU placement, /proc readings.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace bench {

/// Monotonic nanoseconds.
std::int64_t now_ns() noexcept;

/// Nearest-rank percentile (p in 0..100) of `values`; 0 for an empty set.
double percentile(std::vector<double> values, double p);
inline double median(std::vector<double> values) {
  return percentile(std::move(values), 50);
}

/// Where the two parties of a ping-pong (or the host and its worker) run.
enum class Placement {
  /// Not pinned: the scheduler decides.
  unpinned,
  /// Both on CPU 0.
  same_core,
  /// Host on CPU 0, the other party on CPU 1.
  cross_core,
};
const char* to_string(Placement p) noexcept;

/// Number of CPUs this process may run on.
int usable_cpus() noexcept;
/// Pins the calling thread to `cpu` (threads and processes it creates later inherit it).
bool pin_self(int cpu) noexcept;
/// Pins the main thread of process `pid` to `cpu`.
bool pin_pid(pid_t pid, int cpu) noexcept;
/// Lets the calling thread run on every CPU again.
void unpin_self() noexcept;

/// VmRSS of this process in bytes.
std::uint64_t self_rss_bytes();
/// Open file descriptors of this process.
std::size_t self_fd_count();
/// On-CPU time of every thread of `pid`, in nanoseconds (sum of /proc/<pid>/task/*/schedstat).
std::optional<std::uint64_t> cpu_ns_of(pid_t pid);
/// Context switches, voluntary and involuntary, of each thread of `pid`, by thread id
/// (/proc/<pid>/task/*/status); empty if the process is gone.
std::map<pid_t, std::uint64_t> context_switches_of(pid_t pid);
/// utime + stime of `pid` in clock ticks (/proc/<pid>/stat; covers all its threads).
std::optional<std::uint64_t> cpu_ticks_of(pid_t pid);

/// Counts one syscall entry tracepoint (syscalls:sys_enter_<name>) for this thread and every
/// thread and process it creates after the counter is opened. Counts of a child are folded into
/// the total when the child exits, so read after the children are gone.
class SyscallCounter {
 public:
  explicit SyscallCounter(const std::string& syscall_name);
  ~SyscallCounter();
  SyscallCounter(const SyscallCounter&) = delete;
  SyscallCounter& operator=(const SyscallCounter&) = delete;
  bool ok() const noexcept { return fd_ >= 0; }
  std::uint64_t read() const;

 private:
  int fd_ = -1;
};

/// Writes 64 MiB, twice the last-level cache of the machines measured here (32 MiB), so that a
/// timed sample of a payload row, or of the memcpy beside it, starts with none of its buffers in
/// the cache. Without it, a sample met whatever its predecessor left in the cache (the 48 MiB of
/// the memcpy beside it, or the job's own buffers), and rows moved with the order of the steps.
class CacheFlush {
 public:
  CacheFlush();
  void operator()();

 private:
  std::vector<std::byte> scratch_;
  unsigned char fill_ = 0;
};

/// First line of /proc/cpuinfo's "model name", the kernel release, and the date (UTC).
std::string cpu_model();
std::string kernel_release();
std::string utc_date();

}  // namespace bench
