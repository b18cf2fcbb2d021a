// Memory beyond the sampled recycle limits: kernel caps on each worker (MemoryCgroupOptions) and a
// ceiling on all the workers together (MemoryBudget). Parts of PoolOptions (options.hpp); why and
// how to set them is in docs/memory.md.
#pragma once

#include <cstdint>
#include <string>

namespace procpool {

/// Each worker in a memory cgroup of its own, capped by the kernel: a job whose allocations cross
/// the cap ends as ErrorKind::memory_limit however fast it allocates, and the OOM killer acts
/// inside that cgroup alone. Needs a memory cgroup the host may make children in (on cgroup v2,
/// one that holds no process itself). See docs/memory.md, "Layer 2: kernel caps".
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

/// A ceiling on the memory of all the pool's workers together. The job at the head of the queue is
/// given a worker only while the workers' memory plus its expected peak fits (the jobs behind it
/// wait too); one whose peak alone exceeds the budget fails at once with ErrorKind::memory_limit.
/// See docs/memory.md, "Layer 3: the pool memory budget".
struct MemoryBudget {
  /// The budget in bytes. 0 (default): none (unless host_limit_fraction is set).
  std::uint64_t bytes = 0;
  /// "Auto": this fraction of the memory limit of the host's memory cgroup (a container's limit)
  /// when it has one; without one the pool logs so once and runs with no budget. 0 (default): not
  /// used. Allowed: 0, or above 0 up to 1, and not together with `bytes`.
  double host_limit_fraction = 0;
};

}  // namespace procpool
