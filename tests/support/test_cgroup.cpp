#include "test_cgroup.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "test_support.hpp"

namespace procpool::test {

namespace {

std::vector<std::string> split(const std::string& text, char separator) {
  std::vector<std::string> parts;
  std::string part;
  std::istringstream in(text);
  while (std::getline(in, part, separator))
    parts.push_back(part);
  return parts;
}

bool contains_word(const std::string& text, const std::string& word, char separator) {
  for (const std::string& part : split(text, separator)) {
    if (part == word) return true;
  }
  return false;
}

bool write_file(const std::string& path, const std::string& value) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  bool ok = ::write(fd, value.data(), value.size()) == static_cast<ssize_t>(value.size());
  ::close(fd);
  return ok;
}

bool exists(const std::string& path) {
  return ::access(path.c_str(), F_OK) == 0;
}

// Where `cgroup_path` (as /proc/self/cgroup names it) is under a mount of its hierarchy whose
// root is `mount_root`, mounted at `mount_point`.
std::optional<std::string> under_mount(const std::string& mount_point,
                                       const std::string& mount_root,
                                       const std::string& cgroup_path) {
  if (mount_root == "/") return cgroup_path == "/" ? mount_point : mount_point + cgroup_path;
  if (cgroup_path == mount_root) return mount_point;
  if (cgroup_path.rfind(mount_root + "/", 0) != 0) return std::nullopt;
  return mount_point + cgroup_path.substr(mount_root.size());
}

}  // namespace

std::string read_first_line(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

std::optional<std::uint64_t> read_keyed_value(const std::string& path, const std::string& key) {
  std::ifstream in(path);
  std::string name;
  std::uint64_t value = 0;
  while (in >> name >> value) {
    if (name == key) return value;
  }
  return std::nullopt;
}

std::optional<std::pair<std::string, bool>> TestCgroup::own_memory_cgroup(std::string& why_not) {
  std::string v1_path, v2_path;
  {
    std::ifstream in("/proc/self/cgroup");
    for (std::string line; std::getline(in, line);) {
      auto first = line.find(':'), second = line.find(':', first + 1);
      if (first == std::string::npos || second == std::string::npos) continue;
      std::string controllers = line.substr(first + 1, second - first - 1);
      std::string path = line.substr(second + 1);
      if (line.substr(0, first) == "0" && controllers.empty()) v2_path = path;
      if (contains_word(controllers, "memory", ',')) v1_path = path;
    }
  }
  std::ifstream mounts("/proc/self/mountinfo");
  std::optional<std::pair<std::string, bool>> v2;
  for (std::string line; std::getline(mounts, line);) {
    auto dash = line.find(" - ");
    if (dash == std::string::npos) continue;
    std::vector<std::string> left = split(line.substr(0, dash), ' ');
    std::vector<std::string> right = split(line.substr(dash + 3), ' ');
    if (left.size() < 5 || right.size() < 3) continue;
    const std::string &root = left[3], &point = left[4], &type = right[0], &options = right[2];
    if (type == "cgroup" && !v1_path.empty() && contains_word(options, "memory", ',')) {
      if (auto dir = under_mount(point, root, v1_path)) return std::make_pair(*dir, false);
    }
    if (type == "cgroup2" && !v2_path.empty() && !v2 &&
        contains_word(read_first_line(point + "/cgroup.controllers"), "memory", ' ')) {
      if (auto dir = under_mount(point, root, v2_path)) v2 = std::make_pair(*dir, true);
    }
  }
  if (!v2) why_not = "no cgroup hierarchy with the memory controller holds this process";
  return v2;
}

std::unique_ptr<TestCgroup> TestCgroup::make(std::uint64_t limit_bytes, std::string& why_not) {
  if (::geteuid() != 0) {
    why_not = "not root: only root can make memory cgroups here";
    return nullptr;
  }
  auto own = own_memory_cgroup(why_not);
  if (!own) return nullptr;
  auto [parent, v2] = *own;
  if (v2 && !contains_word(read_first_line(parent + "/cgroup.subtree_control"), "memory", ' ')) {
    why_not = "cgroup v2: " + parent +
              " does not enable the memory controller for its children (cgroup.subtree_control)";
    return nullptr;
  }
  // What a test that died left (its process gone, so its destructor never ran): removed, as the
  // destructor would have, so that one crash does not leave cgroups behind for good.
  for (const auto& entry : std::filesystem::directory_iterator(parent)) {
    const std::string name = entry.path().filename().string();
    if (!entry.is_directory() || name.rfind("procpool-test-", 0) != 0) continue;
    const int owner = std::atoi(name.c_str() + std::strlen("procpool-test-"));
    if (owner <= 0 || owner == ::getpid() || ::kill(owner, 0) == 0 || errno != ESRCH) continue;
    std::unique_ptr<TestCgroup>(new TestCgroup(entry.path().string(), parent, v2)).reset();
  }
  static std::atomic<unsigned> counter{0};
  std::string directory =
      parent + "/procpool-test-" + std::to_string(::getpid()) + "-" + std::to_string(++counter);
  if (::mkdir(directory.c_str(), 0755) != 0) {
    why_not = "cannot make " + directory + ": " + std::strerror(errno);
    return nullptr;
  }
  std::unique_ptr<TestCgroup> cgroup(new TestCgroup(directory, parent, v2));
  if (limit_bytes != 0) {
    const std::string limit = std::to_string(limit_bytes);
    bool ok = v2 ? write_file(directory + "/memory.max", limit)
                 : write_file(directory + "/memory.limit_in_bytes", limit);
    // No swap: the limit is the memory the processes may have, as a container's is.
    if (v2 && exists(directory + "/memory.swap.max")) {
      ok = ok && write_file(directory + "/memory.swap.max", "0");
    } else if (!v2 && exists(directory + "/memory.memsw.limit_in_bytes")) {
      ok = ok && write_file(directory + "/memory.memsw.limit_in_bytes", limit);
    }
    if (!ok) {
      why_not = "cannot set the memory limit of " + directory + ": " + std::strerror(errno);
      return nullptr;
    }
  }
  return cgroup;
}

namespace {

// Kills what runs in `directory` and below, and removes them, deepest first. True when gone.
bool remove_tree(const std::string& directory) {
  std::error_code ignored;
  for (const auto& entry : std::filesystem::directory_iterator(directory, ignored)) {
    if (entry.is_directory()) remove_tree(entry.path().string());
  }
  std::ifstream in(directory + "/cgroup.procs");
  for (int pid; in >> pid;)
    ::kill(pid, SIGKILL);
  return ::rmdir(directory.c_str()) == 0 || errno == ENOENT;
}

}  // namespace

TestCgroup::~TestCgroup() {
  eventually([&] { return remove_tree(directory_); });
}

int TestCgroup::spawn(const std::vector<std::string>& argv, int stdout_fd) const {
  const std::string procs = directory_ + "/cgroup.procs";
  std::vector<char*> args;
  for (const std::string& arg : argv)
    args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    int fd = ::open(procs.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0 || ::write(fd, "0", 1) != 1) ::_exit(126);
    ::close(fd);
    if (stdout_fd >= 0 && ::dup2(stdout_fd, STDOUT_FILENO) < 0) ::_exit(126);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  return pid;
}

std::uint64_t TestCgroup::oom_kills() const {
  return read_keyed_value(directory_ + (v2_ ? "/memory.events" : "/memory.oom_control"), "oom_kill")
      .value_or(0);
}

std::vector<int> TestCgroup::processes() const {
  std::vector<int> pids;
  std::ifstream in(directory_ + "/cgroup.procs");
  for (int pid; in >> pid;)
    pids.push_back(pid);
  return pids;
}

}  // namespace procpool::test
