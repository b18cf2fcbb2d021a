// Memory beyond the sampled recycle limits: kernel caps on each worker (MemoryCgroupOptions) and a
// ceiling on all the workers together (MemoryBudget). Parts of PoolOptions (options.hpp); why and
// how to set them is in docs/memory.md.
#pragma once

#include <cstdint>
#include <string>

namespace procpool {

/// Each worker in a memory cgroup of its own, capped by the kernel (docs/memory.md). A job whose
/// allocations cross the cap ends as ErrorKind::memory_limit in tens of milliseconds (the kernel's
/// reclaim, then its OOM killer), whatever RecyclePolicy::memory_sample_interval is, and no other
/// process is touched: the OOM killer acts inside that cgroup alone. Needs a memory cgroup the host
/// may make children in: root (or a delegated directory) on cgroup v1; on cgroup v2 also a parent
/// that holds no processes itself (the "no internal processes" rule), such as a systemd unit with
/// `Delegate=yes` and `DelegateSubgroup=` (the service in a subgroup, the unit's cgroup named as
/// `parent`), a container whose entrypoint moved itself into a leaf cgroup, or a named delegated
/// directory.
struct MemoryCgroupOptions {
  /// false (default): workers run in the host's own memory cgroup.
  bool enabled = false;
  /// The cap, in bytes (cgroup v2 memory.max with memory.swap.max 0; v1 memory.limit_in_bytes and
  /// memory.memsw.limit_in_bytes). 0 (default): RecyclePolicy::memory_hard_limit, which must then
  /// be set. Allowed: 0 or at least 16 MiB.
  std::uint64_t max_bytes = 0;
  /// cgroup v2 only: memory.high, above which the kernel reclaims the worker's memory and slows its
  /// allocations down. 0 (default): not set. Allowed: 0, or below the cap.
  std::uint64_t high_bytes = 0;
  /// The memory cgroup directory the pool makes its own in (`procpool-<pid namespace>-<pid>-<n>`,
  /// holding `worker-<id>` per worker). Empty (default): the host's own memory cgroup, found from
  /// /proc/self/cgroup and /proc/self/mountinfo.
  std::string parent;
  /// What happens when this machine does not allow the cgroups (no memory controller, no right to
  /// make children, cgroup v2's rule): false (default), the pool logs why once, runs with the
  /// sampled limits alone, and PoolStats::memory.enforcement says so; true, the Pool constructor
  /// throws ConfigError saying why.
  bool required = false;
};

/// A ceiling on the memory of all the pool's workers together (docs/memory.md). A queued job is
/// given a worker only while the workers' memory plus the job's expected peak
/// (SubmitOptions::expected_memory_bytes, else the largest change its name has shown) fits; the
/// job at the head of the queue waits until it does, and those behind it wait for it. With no
/// worker running a job or leaving, it runs whatever the figures say, so nothing waits forever. A
/// job whose expected peak alone exceeds the budget fails at once with ErrorKind::memory_limit.
struct MemoryBudget {
  /// The budget in bytes. 0 (default): none (unless host_limit_fraction is set).
  std::uint64_t bytes = 0;
  /// "Auto": this fraction of the memory limit of the host's memory cgroup (a container's limit)
  /// when it has one; without one the pool logs so once and runs with no budget. 0 (default): not
  /// used. Allowed: 0, or above 0 up to 1, and not together with `bytes`.
  double host_limit_fraction = 0;
};

}  // namespace procpool
