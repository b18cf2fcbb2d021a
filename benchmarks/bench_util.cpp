#include "bench_util.hpp"

#include <dirent.h>
#include <linux/perf_event.h>
#include <sched.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <ctime>
#include <fstream>
#include <sstream>

namespace bench {

std::int64_t now_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

double percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  auto rank = static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(values.size())));
  if (rank == 0) rank = 1;
  return values[std::min(rank, values.size()) - 1];
}

const char* to_string(Placement p) noexcept {
  switch (p) {
    case Placement::unpinned:
      return "unpinned";
    case Placement::same_core:
      return "same core";
    case Placement::cross_core:
      return "cross core";
  }
  return "?";
}

int usable_cpus() noexcept {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) != 0) return 1;
  return CPU_COUNT(&set);
}

bool pin_pid(pid_t pid, int cpu) noexcept {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return sched_setaffinity(pid, sizeof set, &set) == 0;
}

bool pin_self(int cpu) noexcept {
  return pin_pid(0, cpu);
}

void unpin_self() noexcept {
  cpu_set_t set;
  CPU_ZERO(&set);
  long n = sysconf(_SC_NPROCESSORS_CONF);
  for (long i = 0; i < n && i < CPU_SETSIZE; ++i)
    CPU_SET(static_cast<int>(i), &set);
  sched_setaffinity(0, sizeof set, &set);
}

std::uint64_t self_rss_bytes() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) {
      std::istringstream fields(line.substr(6));
      std::uint64_t kib = 0;
      fields >> kib;
      return kib * 1024;
    }
  }
  return 0;
}

namespace {

template <class F>
void for_each_entry(const std::string& dir, F&& f) {
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    f(std::string(e->d_name));
  }
  closedir(d);
}

}  // namespace

std::size_t self_fd_count() {
  std::size_t n = 0;
  for_each_entry("/proc/self/fd", [&](const std::string&) { ++n; });
  return n > 0 ? n - 1 : 0;  // minus the descriptor opendir itself holds
}

std::optional<std::uint64_t> cpu_ns_of(pid_t pid) {
  std::string base = "/proc/" + std::to_string(pid) + "/task";
  std::uint64_t total = 0;
  bool any = false;
  for_each_entry(base, [&](const std::string& tid) {
    std::ifstream in(base + "/" + tid + "/schedstat");
    std::uint64_t on_cpu = 0;
    if (in >> on_cpu) {
      total += on_cpu;
      any = true;
    }
  });
  if (!any) return std::nullopt;
  return total;
}

std::map<pid_t, std::uint64_t> context_switches_of(pid_t pid) {
  std::string base = "/proc/" + std::to_string(pid) + "/task";
  std::map<pid_t, std::uint64_t> out;
  for_each_entry(base, [&](const std::string& tid) {
    std::ifstream in(base + "/" + tid + "/status");
    std::string line;
    std::uint64_t total = 0;
    bool any = false;
    while (std::getline(in, line)) {
      // "voluntary_ctxt_switches:" and "nonvoluntary_ctxt_switches:"
      if (line.find("ctxt_switches:") == std::string::npos) continue;
      total += std::stoull(line.substr(line.find(':') + 1));
      any = true;
    }
    if (any) out[static_cast<pid_t>(std::stol(tid))] = total;
  });
  return out;
}

std::optional<std::uint64_t> cpu_ticks_of(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto close = text.rfind(')');  // the command name may hold spaces and parentheses
  if (close == std::string::npos) return std::nullopt;
  std::istringstream fields(text.substr(close + 2));
  std::string field;
  // Fields after the name start at 3 (state); utime is 14 and stime 15.
  std::uint64_t utime = 0, stime = 0;
  for (int i = 3; i <= 15 && (fields >> field); ++i) {
    if (i == 14) utime = std::stoull(field);
    if (i == 15) stime = std::stoull(field);
  }
  return utime + stime;
}

SyscallCounter::SyscallCounter(const std::string& syscall_name) {
  std::ifstream id_file("/sys/kernel/tracing/events/syscalls/sys_enter_" + syscall_name + "/id");
  if (!id_file)
    id_file.open("/sys/kernel/debug/tracing/events/syscalls/sys_enter_" + syscall_name + "/id");
  std::uint64_t id = 0;
  if (!(id_file >> id)) return;
  perf_event_attr attr{};
  attr.type = PERF_TYPE_TRACEPOINT;
  attr.size = sizeof attr;
  attr.config = id;
  attr.inherit = 1;
  fd_ = static_cast<int>(syscall(SYS_perf_event_open, &attr, 0, -1, -1, PERF_FLAG_FD_CLOEXEC));
}

SyscallCounter::~SyscallCounter() {
  if (fd_ >= 0) close(fd_);
}

std::uint64_t SyscallCounter::read() const {
  std::uint64_t value = 0;
  if (fd_ < 0 || ::read(fd_, &value, sizeof value) != static_cast<ssize_t>(sizeof value)) return 0;
  return value;
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      auto colon = line.find(':');
      if (colon != std::string::npos) return line.substr(colon + 2);
    }
  }
  return "unknown";
}

std::string kernel_release() {
  utsname u{};
  if (uname(&u) != 0) return "unknown";
  return u.release;
}

std::string utc_date() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d", &tm);
  return buf;
}

CacheFlush::CacheFlush() : scratch_(std::size_t{64} << 20) {}

void CacheFlush::operator()() {
  ++fill_;
  std::memset(scratch_.data(), fill_, scratch_.size());
}

}  // namespace bench
