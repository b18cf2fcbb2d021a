// Memory cgroups, v1 and v2: the one part of the platform seam that touches /sys/fs/cgroup.
//
// Every function works on the directories it is given, so that the tests can run the v2 paths
// against a directory laid out as cgroupfs is (the same file names and formats) on a machine whose
// memory controller is bound to v1. Which version a directory belongs to is never assumed: it is
// read from /proc/self/cgroup and /proc/self/mountinfo, or, for a directory a user names, from the
// interface files it holds. docs/memory.md says what each file means.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "platform/platform.hpp"

namespace procpool::platform {

enum class CgroupVersion { v1, v2 };

/// A memory cgroup: its directory in a mounted hierarchy, and that hierarchy's version.
struct MemoryCgroup {
  CgroupVersion version = CgroupVersion::v2;
  /// Absolute, without a trailing '/'.
  std::string directory;
  /// Where its hierarchy is mounted: no ancestor above this is visible. Empty: unknown (a directory
  /// a user named), and then only `directory` itself is looked at.
  std::string mount_point;
};

/// Where a process's memory cgroup could be, by hierarchy, from the texts of its
/// /proc/<pid>/cgroup and /proc/<pid>/mountinfo. Pure.
struct CgroupMembership {
  /// The cgroup of a v1 hierarchy with the memory controller, if the process is in one and that
  /// hierarchy is mounted here.
  std::optional<MemoryCgroup> v1;
  /// The process's cgroup in the mounted v2 hierarchy, whatever controllers it has.
  std::optional<MemoryCgroup> v2;
};
CgroupMembership parse_cgroup_membership(std::string_view proc_cgroup, std::string_view mountinfo);

/// Of the two, the one that has the memory controller: v1 when it is there (a controller is bound
/// to one hierarchy at a time), else v2 when the cgroup.controllers file at the root of its mount
/// lists `memory`. nullopt, with `why_not` set, if neither.
std::optional<MemoryCgroup> choose_memory_cgroup(const CgroupMembership& membership,
                                                 std::string& why_not);

/// This process's memory cgroup (parse_cgroup_membership of /proc/self, then
/// choose_memory_cgroup).
std::optional<MemoryCgroup> own_memory_cgroup(std::string& why_not);

/// A directory a user named as a memory cgroup: v2 if it holds cgroup.controllers listing
/// `memory`, v1 if it holds memory.limit_in_bytes; nullopt with `why_not` otherwise.
std::optional<MemoryCgroup> memory_cgroup_at(const std::string& directory, std::string& why_not);

/// The memory limit of `cgroup` itself (v2 memory.max, v1 memory.limit_in_bytes); nullopt when it
/// has none ("max", or v1's page-rounded LLONG_MAX) or it cannot be read.
std::optional<std::uint64_t> memory_limit(const MemoryCgroup& cgroup);

/// The lowest memory limit of `cgroup` and its ancestors up to its mount point: what its
/// processes can use together with everything else under that ancestor.
struct EffectiveLimit {
  std::uint64_t bytes = 0;
  /// The cgroup whose limit it is.
  std::string directory;
};
std::optional<EffectiveLimit> effective_memory_limit(const MemoryCgroup& cgroup);

/// Memory charged to `cgroup` now (v2 memory.current, v1 memory.usage_in_bytes).
std::optional<std::uint64_t> memory_usage(const MemoryCgroup& cgroup);

/// OOM kills the kernel counted for processes of `cgroup` (v2 memory.events oom_kill, which
/// includes its descendants'; v1 memory.oom_control oom_kill, its own processes'). nullopt if the
/// file cannot be read.
std::optional<std::uint64_t> oom_kill_count(const MemoryCgroup& cgroup);

/// OOM kills counted on the whole machine (/proc/vmstat oom_kill).
std::optional<std::uint64_t> system_oom_kill_count();

/// Whether `cgroup`'s memory reached its own limit at some point (v2: an "oom" event in its
/// memory.events, which is counted where the limit is; v1: a failed charge in memory.failcnt, or a
/// peak, memory.max_usage_in_bytes, within 4 MiB of the limit).
bool reached_own_limit(const MemoryCgroup& cgroup);

/// cgroup v2: makes the memory controller available to `parent`'s children (`+memory` in its
/// cgroup.subtree_control) unless it already is. Empty on success; otherwise why not, in words a
/// user can act on (the "no internal processes" rule: the kernel refuses while `parent` holds
/// processes itself). Nothing to do on v1.
std::string enable_memory_for_children(const MemoryCgroup& parent);

/// Makes the cgroup `parent/name`. Throws std::system_error naming the directory.
MemoryCgroup make_child_cgroup(const MemoryCgroup& parent, const std::string& name);

/// What the kernel holds a cgroup's processes to.
struct MemoryCaps {
  /// v2 memory.max; v1 memory.limit_in_bytes and memory.memsw.limit_in_bytes (no swap beyond it).
  std::uint64_t max_bytes = 0;
  /// v2 memory.high (reclaim and throttling above it); 0: not set. Not on v1.
  std::uint64_t high_bytes = 0;
};
/// Caps `cgroup`. On v2 it also sets memory.swap.max to 0 and memory.oom.group to 1 (an OOM kill
/// takes every process in it), where the kernel has those files. Throws std::system_error naming
/// the file.
void cap_memory(const MemoryCgroup& cgroup, const MemoryCaps& caps);

/// Opens `cgroup`'s cgroup.procs for writing: a process that writes "0" to it (write_self_into)
/// moves itself into `cgroup`, with the permissions of the opener, whatever credentials it has by
/// then. Throws std::system_error.
UniqueFd open_cgroup_procs(const MemoryCgroup& cgroup);
/// Moves the calling process into the cgroup whose cgroup.procs `procs` is. Only system calls
/// (it runs in vfork children and forked workers). False with errno set.
bool write_self_into(int procs) noexcept;

/// The processes in `cgroup` now.
std::vector<int> cgroup_processes(const MemoryCgroup& cgroup);
/// SIGKILLs every process in `cgroup` (v2 cgroup.kill where the kernel has it, else each process
/// listed). Never throws.
void kill_cgroup_processes(const MemoryCgroup& cgroup) noexcept;
/// Removes `cgroup` if it holds no process and no child: true if it is gone (or was), false while
/// it is still in use (errno EBUSY or ENOTEMPTY).
bool remove_cgroup(const MemoryCgroup& cgroup) noexcept;
/// The names of `cgroup`'s child cgroups.
std::vector<std::string> child_cgroups(const MemoryCgroup& cgroup);

}  // namespace procpool::platform
