// Memory cgroups on Linux: finding them, reading their counters, making capped children.
#include "platform/cgroup.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>

#include "platform/linux/syscall.hpp"

namespace procpool::platform {

using detail::retry_on_eintr;

namespace {

// v1 reports "no limit" as LLONG_MAX rounded down to a page; anything this large is none.
constexpr std::uint64_t no_limit_from = std::uint64_t{1} << 62;

std::vector<std::string_view> split(std::string_view text, char separator) {
  std::vector<std::string_view> parts;
  while (true) {
    auto at = text.find(separator);
    parts.push_back(text.substr(0, at));
    if (at == std::string_view::npos) return parts;
    text.remove_prefix(at + 1);
  }
}

bool has_word(std::string_view text, std::string_view word) {
  for (std::string_view part : split(text, ' ')) {
    while (!part.empty() && (part.back() == '\n' || part.back() == '\t'))
      part.remove_suffix(1);
    if (part == word) return true;
  }
  return false;
}

// mountinfo escapes space, tab, newline and backslash in paths as \ooo.
std::string unescape(std::string_view field) {
  auto octal = [](char c) { return c >= '0' && c <= '7'; };
  std::string out;
  for (std::size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size() && octal(field[i + 1]) && octal(field[i + 2]) &&
        octal(field[i + 3])) {
      out += static_cast<char>((field[i + 1] - '0') * 64 + (field[i + 2] - '0') * 8 +
                               (field[i + 3] - '0'));
      i += 3;
    } else {
      out += field[i];
    }
  }
  return out;
}

// Where the cgroup `path` (as /proc/<pid>/cgroup names it) is, in a mount of its hierarchy whose
// root is `root`, mounted at `mount_point`.
std::optional<std::string> under_mount(const std::string& mount_point, const std::string& root,
                                       std::string_view path) {
  auto joined = [&](std::string_view rest) {
    std::string dir = mount_point;
    if (!rest.empty() && rest != "/") dir += rest;
    return dir;
  };
  if (root == "/") return joined(path);
  if (path == root) return mount_point;
  if (path.size() > root.size() && path.substr(0, root.size()) == root &&
      path[root.size()] == '/') {
    return joined(path.substr(root.size()));
  }
  return std::nullopt;
}

std::string path_of(const MemoryCgroup& cgroup, const char* file) {
  return cgroup.directory + "/" + file;
}

std::optional<std::string> read_text(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return std::nullopt;
  std::string text;
  char buffer[4096];
  for (;;) {
    ssize_t n = retry_on_eintr([&] { return ::read(fd.get(), buffer, sizeof buffer); });
    if (n < 0) return std::nullopt;
    if (n == 0) return text;
    text.append(buffer, static_cast<std::size_t>(n));
  }
}

std::optional<std::uint64_t> parse_number(std::string_view text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' '))
    text.remove_suffix(1);
  std::uint64_t value = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

std::optional<std::uint64_t> read_number(const std::string& path) {
  std::optional<std::string> text = read_text(path);
  if (!text) return std::nullopt;
  return parse_number(*text);
}

// The value of `key` in a flat-keyed file ("key value" per line).
std::optional<std::uint64_t> read_keyed(const std::string& path, std::string_view key) {
  std::optional<std::string> text = read_text(path);
  if (!text) return std::nullopt;
  for (std::string_view line : split(*text, '\n')) {
    auto space = line.find(' ');
    if (space != std::string_view::npos && line.substr(0, space) == key) {
      return parse_number(line.substr(space + 1));
    }
  }
  return std::nullopt;
}

bool exists(const std::string& path) {
  return ::access(path.c_str(), F_OK) == 0;
}

// Writes `value` to a cgroup interface file, as `echo value > file` does. False with errno set.
bool write_text(const std::string& path, std::string_view value) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC));
  if (!fd) return false;
  ssize_t n = retry_on_eintr([&] { return ::write(fd.get(), value.data(), value.size()); });
  return n == static_cast<ssize_t>(value.size());
}

void write_or_throw(const std::string& path, std::string_view value) {
  if (!write_text(path, value)) {
    detail::throw_errno("write '" + std::string(value) + "' to " + path);
  }
}

std::string parent_directory(const std::string& directory) {
  auto slash = directory.rfind('/');
  return slash == 0 || slash == std::string::npos ? std::string("/") : directory.substr(0, slash);
}

}  // namespace

CgroupMembership parse_cgroup_membership(std::string_view proc_cgroup, std::string_view mountinfo) {
  std::optional<std::string> v1_path, v2_path;
  for (std::string_view line : split(proc_cgroup, '\n')) {
    auto first = line.find(':');
    auto second = first == std::string_view::npos ? first : line.find(':', first + 1);
    if (second == std::string_view::npos) continue;
    std::string_view controllers = line.substr(first + 1, second - first - 1);
    std::string path(line.substr(second + 1));
    if (line.substr(0, first) == "0" && controllers.empty()) v2_path = path;
    for (std::string_view controller : split(controllers, ',')) {
      if (controller == "memory") v1_path = path;
    }
  }
  CgroupMembership membership;
  for (std::string_view line : split(mountinfo, '\n')) {
    auto dash = line.find(" - ");
    if (dash == std::string_view::npos) continue;
    std::vector<std::string_view> mount = split(line.substr(0, dash), ' ');
    std::vector<std::string_view> source = split(line.substr(dash + 3), ' ');
    if (mount.size() < 5 || source.size() < 3) continue;
    const std::string root = unescape(mount[3]), point = unescape(mount[4]);
    const std::string_view type = source[0], options = source[2];
    if (type == "cgroup" && v1_path && !membership.v1) {
      bool memory = false;
      for (std::string_view option : split(options, ','))
        memory |= option == "memory";
      if (!memory) continue;
      if (auto dir = under_mount(point, root, *v1_path)) {
        membership.v1 = MemoryCgroup{CgroupVersion::v1, *dir, point};
      }
    } else if (type == "cgroup2" && v2_path && !membership.v2) {
      if (auto dir = under_mount(point, root, *v2_path)) {
        membership.v2 = MemoryCgroup{CgroupVersion::v2, *dir, point};
      }
    }
  }
  return membership;
}

std::optional<MemoryCgroup> choose_memory_cgroup(const CgroupMembership& membership,
                                                 std::string& why_not) {
  if (membership.v1) return membership.v1;
  if (!membership.v2) {
    why_not =
        "this process is in no memory cgroup: /proc/self/cgroup names no cgroup v1 memory "
        "hierarchy and no cgroup v2 hierarchy that is mounted here";
    return std::nullopt;
  }
  const std::string controllers = membership.v2->mount_point + "/cgroup.controllers";
  if (!has_word(read_text(controllers).value_or(""), "memory")) {
    why_not = "the cgroup v2 hierarchy at " + membership.v2->mount_point +
              " does not have the memory controller (" + controllers +
              "), and no cgroup v1 hierarchy has it for this process";
    return std::nullopt;
  }
  return membership.v2;
}

std::optional<MemoryCgroup> own_memory_cgroup(std::string& why_not) {
  std::optional<std::string> cgroup = read_text("/proc/self/cgroup");
  std::optional<std::string> mountinfo = read_text("/proc/self/mountinfo");
  if (!cgroup || !mountinfo) {
    why_not = "/proc/self/cgroup or /proc/self/mountinfo cannot be read";
    return std::nullopt;
  }
  return choose_memory_cgroup(parse_cgroup_membership(*cgroup, *mountinfo), why_not);
}

std::optional<MemoryCgroup> memory_cgroup_at(const std::string& directory, std::string& why_not) {
  std::string dir = directory;
  while (dir.size() > 1 && dir.back() == '/')
    dir.pop_back();
  if (std::optional<std::string> controllers = read_text(dir + "/cgroup.controllers")) {
    if (has_word(*controllers, "memory")) return MemoryCgroup{CgroupVersion::v2, dir, {}};
    why_not = dir +
              " is a cgroup v2 directory without the memory controller: its parent does not "
              "enable it for its children (cgroup.subtree_control)";
    return std::nullopt;
  }
  if (exists(dir + "/memory.limit_in_bytes")) return MemoryCgroup{CgroupVersion::v1, dir, {}};
  why_not = dir +
            " is not a memory cgroup: it holds neither cgroup.controllers (cgroup v2) nor "
            "memory.limit_in_bytes (cgroup v1)";
  return std::nullopt;
}

std::optional<std::uint64_t> memory_limit(const MemoryCgroup& cgroup) {
  std::optional<std::uint64_t> limit = cgroup.version == CgroupVersion::v2
                                           ? read_number(path_of(cgroup, "memory.max"))
                                           : read_number(path_of(cgroup, "memory.limit_in_bytes"));
  if (!limit || *limit >= no_limit_from) return std::nullopt;  // v2 "max" does not parse
  return limit;
}

std::optional<EffectiveLimit> effective_memory_limit(const MemoryCgroup& cgroup) {
  std::optional<EffectiveLimit> lowest;
  MemoryCgroup at = cgroup;
  for (;;) {
    if (std::optional<std::uint64_t> limit = memory_limit(at)) {
      if (!lowest || *limit < lowest->bytes) lowest = EffectiveLimit{*limit, at.directory};
    }
    const bool top = at.mount_point.empty() || at.directory == at.mount_point ||
                     at.directory.size() <= at.mount_point.size();
    if (top) return lowest;
    at.directory = parent_directory(at.directory);
  }
}

std::optional<std::uint64_t> memory_usage(const MemoryCgroup& cgroup) {
  return read_number(path_of(
      cgroup, cgroup.version == CgroupVersion::v2 ? "memory.current" : "memory.usage_in_bytes"));
}

std::optional<std::uint64_t> oom_kill_count(const MemoryCgroup& cgroup) {
  return read_keyed(
      path_of(cgroup, cgroup.version == CgroupVersion::v2 ? "memory.events" : "memory.oom_control"),
      "oom_kill");
}

std::optional<std::uint64_t> system_oom_kill_count() {
  return read_keyed("/proc/vmstat", "oom_kill");
}

bool reached_own_limit(const MemoryCgroup& cgroup) {
  if (cgroup.version == CgroupVersion::v2) {
    return read_keyed(path_of(cgroup, "memory.events"), "oom").value_or(0) > 0;
  }
  // v1 counts failed charges in memory.failcnt, but not always where memory+swap failed first
  // (seen on 6.18 with both limits equal): a peak within a huge page or a charge batch of the
  // limit counts too.
  if (read_number(path_of(cgroup, "memory.failcnt")).value_or(0) > 0) return true;
  constexpr std::uint64_t near = std::uint64_t{4} << 20;
  std::optional<std::uint64_t> limit = memory_limit(cgroup);
  std::optional<std::uint64_t> peak = read_number(path_of(cgroup, "memory.max_usage_in_bytes"));
  return limit && peak && *peak + near >= *limit;
}

std::string enable_memory_for_children(const MemoryCgroup& parent) {
  if (parent.version == CgroupVersion::v1) return {};
  const std::string subtree = path_of(parent, "cgroup.subtree_control");
  if (has_word(read_text(subtree).value_or(""), "memory")) return {};
  if (!has_word(read_text(path_of(parent, "cgroup.controllers")).value_or(""), "memory")) {
    return "the memory controller is not available in " + parent.directory +
           " (its cgroup.controllers): its own parent does not enable it for its children";
  }
  if (write_text(subtree, "+memory")) return {};
  if (errno == EBUSY) {
    return parent.directory +
           " holds processes itself, and cgroup v2's \"no internal processes\" rule then keeps "
           "the memory controller from its children: run the host in a leaf cgroup of its own "
           "(systemd Delegate=yes with DelegateSubgroup=, or a container entrypoint that moves "
           "itself into a child cgroup) and name the cgroup above it in "
           "MemoryCgroupOptions::parent (docs/memory.md)";
  }
  return "cannot enable the memory controller for the children of " + parent.directory + " (" +
         subtree + "): " + std::strerror(errno);
}

MemoryCgroup make_child_cgroup(const MemoryCgroup& parent, const std::string& name) {
  MemoryCgroup child{parent.version, parent.directory + "/" + name, parent.mount_point};
  if (::mkdir(child.directory.c_str(), 0755) != 0) detail::throw_errno("mkdir " + child.directory);
  return child;
}

void cap_memory(const MemoryCgroup& cgroup, const MemoryCaps& caps) {
  const std::string max = std::to_string(caps.max_bytes);
  if (cgroup.version == CgroupVersion::v1) {
    // The memory limit first: memory+swap may never be below it.
    write_or_throw(path_of(cgroup, "memory.limit_in_bytes"), max);
    const std::string memsw = path_of(cgroup, "memory.memsw.limit_in_bytes");
    if (exists(memsw)) write_or_throw(memsw, max);
    return;
  }
  write_or_throw(path_of(cgroup, "memory.max"), max);
  if (caps.high_bytes != 0) {
    write_or_throw(path_of(cgroup, "memory.high"), std::to_string(caps.high_bytes));
  }
  const std::string swap = path_of(cgroup, "memory.swap.max");
  if (exists(swap)) write_or_throw(swap, "0");
  const std::string group = path_of(cgroup, "memory.oom.group");
  if (exists(group)) write_or_throw(group, "1");
}

UniqueFd open_cgroup_procs(const MemoryCgroup& cgroup) {
  const std::string path = path_of(cgroup, "cgroup.procs");
  UniqueFd fd(detail::keep_off_stdio(::open(path.c_str(), O_WRONLY | O_CLOEXEC)));
  if (!fd) detail::throw_errno("open " + path);
  return fd;
}

bool write_self_into(int procs) noexcept {
  return ::write(procs, "0", 1) == 1;
}

std::vector<int> cgroup_processes(const MemoryCgroup& cgroup) {
  std::vector<int> pids;
  // The text must outlive the views split() returns into it.
  const std::string text = read_text(path_of(cgroup, "cgroup.procs")).value_or("");
  for (std::string_view line : split(text, '\n')) {
    int pid = 0;
    auto [end, error] = std::from_chars(line.data(), line.data() + line.size(), pid);
    if (error == std::errc() && end == line.data() + line.size() && pid > 0) pids.push_back(pid);
  }
  return pids;
}

void kill_cgroup_processes(const MemoryCgroup& cgroup) noexcept {
  try {
    const std::string kill_file = path_of(cgroup, "cgroup.kill");
    if (cgroup.version == CgroupVersion::v2 && exists(kill_file) && write_text(kill_file, "1")) {
      return;
    }
    for (int pid : cgroup_processes(cgroup))
      ::kill(pid, SIGKILL);
  } catch (...) {
    // Out of memory for the list: what is left is killed at the next attempt.
  }
}

bool remove_cgroup(const MemoryCgroup& cgroup) noexcept {
  return ::rmdir(cgroup.directory.c_str()) == 0 || errno == ENOENT;
}

std::vector<std::string> child_cgroups(const MemoryCgroup& cgroup) {
  std::vector<std::string> names;
  DIR* dir = ::opendir(cgroup.directory.c_str());
  if (!dir) return names;
  while (const dirent* entry = ::readdir(dir)) {
    std::string_view name = entry->d_name;
    if (name == "." || name == "..") continue;
    if (entry->d_type == DT_DIR || (entry->d_type == DT_UNKNOWN &&
                                    exists(cgroup.directory + "/" + std::string(name) + "/."))) {
      names.emplace_back(name);
    }
  }
  ::closedir(dir);
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace procpool::platform
