// A memory cgroup made for one test, with the kernel's own files: the tests' independent way to
// put a process under a memory limit and to read what the kernel counted there.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace procpool::test {

class TestCgroup {
 public:
  /// Makes `<this process's memory cgroup>/procpool-test-<pid>-<n>`, limited to `limit_bytes`
  /// (0: no limit of its own), on cgroup v1 or v2, whichever hierarchy has the memory controller.
  /// nullptr, with `why_not` set, where this machine cannot: not root, no memory controller, or
  /// no child cgroups allowed here.
  static std::unique_ptr<TestCgroup> make(std::uint64_t limit_bytes, std::string& why_not);
  /// Kills whatever still runs in it and removes it (waiting up to 10 s for the kernel to let go).
  ~TestCgroup();
  TestCgroup(const TestCgroup&) = delete;
  TestCgroup& operator=(const TestCgroup&) = delete;

  const std::string& directory() const { return directory_; }
  bool v2() const { return v2_; }
  /// The directory of this process's own memory cgroup (the parent of directory()).
  const std::string& parent() const { return parent_; }

  /// Starts `argv` (argv[0] a path) as a child of this process, placed in this cgroup before it
  /// executes; its stdout goes to `stdout_fd` (-1: inherited). Returns its pid.
  int spawn(const std::vector<std::string>& argv, int stdout_fd = -1) const;
  /// OOM kills the kernel counted in this cgroup (v1 memory.oom_control, v2 memory.events).
  std::uint64_t oom_kills() const;
  /// The processes in it now.
  std::vector<int> processes() const;

  /// The memory cgroup directory of this process, and whether it is on cgroup v2; nullopt with
  /// `why_not` if there is none.
  static std::optional<std::pair<std::string, bool>> own_memory_cgroup(std::string& why_not);

 private:
  TestCgroup(std::string directory, std::string parent, bool v2)
      : directory_(std::move(directory)), parent_(std::move(parent)), v2_(v2) {}
  std::string directory_;
  std::string parent_;
  bool v2_;
};

/// The first line of `path`'s contents, or "" if it cannot be read.
std::string read_first_line(const std::string& path);
/// The value after `key` in a flat-keyed file ("key value" lines), if any.
std::optional<std::uint64_t> read_keyed_value(const std::string& path, const std::string& key);

}  // namespace procpool::test
