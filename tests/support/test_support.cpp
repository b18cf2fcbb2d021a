#include "test_support.hpp"

#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <system_error>
#include <thread>

namespace procpool::test {

Bytes bytes(std::string_view text) {
  const auto* p = reinterpret_cast<const std::byte*>(text.data());
  return Bytes(p, p + text.size());
}

std::string text(const Bytes& bytes) {
  return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

bool eventually(const std::function<bool()>& condition, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

bool settled(Pool& pool, std::size_t workers) {
  return eventually([&] {
    PoolStats stats = pool.stats();
    return stats.workers.size() == workers &&
           std::all_of(stats.workers.begin(), stats.workers.end(),
                       [](const WorkerStats& w) { return w.state == WorkerState::idle; });
  });
}

PoolOptions quiet_options(std::size_t workers) {
  PoolOptions options;
  options.workers = workers;
  options.ring_bytes = std::size_t{64} << 10;
  options.kill_grace = std::chrono::milliseconds(200);
  options.log = [](LogLevel, std::string_view) {};
  return options;
}

StartMark::StartMark() {
  static std::atomic<int> counter{0};
  path_ = (std::filesystem::temp_directory_path() /
           ("procpool-started-" + std::to_string(::getpid()) + "-" + std::to_string(++counter)))
              .string();
  std::filesystem::remove(path_);  // left by an earlier process with this pid
}

StartMark::~StartMark() {
  std::error_code ignored;
  std::filesystem::remove(path_, ignored);
}

Bytes StartMark::payload() const {
  return bytes(path_);
}

bool StartMark::seen() const {
  return std::filesystem::exists(path_);
}

LogSink LogLines::sink() {
  return [this](LogLevel, std::string_view line) {
    std::lock_guard lock(mutex_);
    lines_.emplace_back(line);
  };
}

std::size_t LogLines::count(std::string_view part) {
  std::lock_guard lock(mutex_);
  return static_cast<std::size_t>(std::count_if(lines_.begin(), lines_.end(), [&](const auto& l) {
    return l.find(part) != std::string::npos;
  }));
}

std::vector<std::string> LogLines::lines() {
  std::lock_guard lock(mutex_);
  return lines_;
}

std::string test_worker_path() {
  return PROCPOOL_TEST_WORKER;
}

PinnedToOneCpu::PinnedToOneCpu() {
  if (::sched_getaffinity(0, sizeof before_, &before_) != 0) {
    throw std::system_error(errno, std::generic_category(), "sched_getaffinity");
  }
  int cpu = 0;
  while (!CPU_ISSET(cpu, &before_))
    ++cpu;
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(cpu, &one);
  if (::sched_setaffinity(0, sizeof one, &one) != 0) {
    throw std::system_error(errno, std::generic_category(), "sched_setaffinity");
  }
}

PinnedToOneCpu::~PinnedToOneCpu() {
  ::sched_setaffinity(0, sizeof before_, &before_);
}

Gate::Gate() {
  static std::atomic<unsigned> counter{0};
  path_ = (std::filesystem::temp_directory_path() /
           ("procpool-test-gate-" + std::to_string(::getpid()) + "-" + std::to_string(++counter)))
              .string();
  if (::mkfifo(path_.c_str(), 0600) != 0) {
    throw std::runtime_error("mkfifo " + path_ + ": " + std::strerror(errno));
  }
}

Gate::~Gate() {
  ::unlink(path_.c_str());
}

Bytes Gate::payload() const {
  return bytes(path_);
}

void Gate::release() {
  std::ofstream out(path_, std::ios::binary);  // blocks until the job opened its end
  out.put('x');
}

namespace {

struct ProcStat {
  int pid = 0;
  char state = '?';
  int ppid = 0;
};

std::optional<ProcStat> read_stat(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return std::nullopt;
  // pid (comm) state ppid ...; comm may contain spaces and parentheses: split at the last ')'.
  auto close = line.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  ProcStat stat;
  stat.pid = pid;
  std::istringstream rest(line.substr(close + 2));
  rest >> stat.state >> stat.ppid;
  return stat;
}

template <class F>
void for_each_process(F&& f) {
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    if (auto stat = read_stat(std::stoi(name))) f(*stat);
  }
}

}  // namespace

std::vector<int> child_pids(int parent) {
  std::vector<int> pids;
  for_each_process([&](const ProcStat& s) {
    if (s.ppid == parent) pids.push_back(s.pid);
  });
  return pids;
}

std::vector<int> zombie_children(int parent) {
  std::vector<int> pids;
  for_each_process([&](const ProcStat& s) {
    if (s.ppid == parent && s.state == 'Z') pids.push_back(s.pid);
  });
  return pids;
}

std::vector<int> fork_servers(int parent) {
  std::vector<int> pids;
  for (int pid : child_pids(parent)) {
    std::ifstream file("/proc/" + std::to_string(pid) + "/cmdline", std::ios::binary);
    std::string cmdline((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
    if (cmdline.find(std::string("--procpool-fork-server") + '\0') != std::string::npos) {
      pids.push_back(pid);
    }
  }
  return pids;
}

bool process_alive(int pid) {
  auto stat = read_stat(pid);
  return stat && stat->state != 'Z' && stat->state != 'X';
}

bool process_stopped(int pid) {
  auto stat = read_stat(pid);
  return stat && stat->state == 'T';
}

std::vector<std::string> shm_entries_for(int pid) {
  std::vector<std::string> names;
  std::string prefix = "procpool-" + std::to_string(pid) + "-";
  for (const auto& entry : std::filesystem::directory_iterator("/dev/shm")) {
    std::string name = entry.path().filename().string();
    if (name.starts_with(prefix)) names.push_back(name);
  }
  return names;
}

std::size_t open_fd_count() {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator("/proc/self/fd"))
    ++n;
  return n;
}

std::uint64_t self_rss_bytes() {
  std::ifstream in("/proc/self/statm");
  std::uint64_t size = 0, resident = 0;
  in >> size >> resident;
  return resident * static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
}

std::uint64_t context_switches(int pid, int except_thread) {
  std::uint64_t total = 0;
  const std::filesystem::path tasks = "/proc/" + std::to_string(pid) + "/task";
  for (const auto& task : std::filesystem::directory_iterator(tasks)) {
    if (task.path().filename() == std::to_string(except_thread)) continue;
    std::ifstream status(task.path() / "status");
    std::string key;
    while (status >> key) {
      if (key == "voluntary_ctxt_switches:" || key == "nonvoluntary_ctxt_switches:") {
        std::uint64_t n = 0;
        status >> n;
        total += n;
      }
    }
  }
  return total;
}

}  // namespace procpool::test
