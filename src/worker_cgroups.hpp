// The pool's memory cgroups (PoolOptions::worker_cgroups): a directory of the pool's own under the
// host's memory cgroup (or a named one), and in it one capped cgroup per worker, made before the
// worker starts and removed once it is reaped and nothing else runs in it. Directories of pools
// whose host died are swept at start. Supervisor thread only, after the constructor.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "oom_attribution.hpp"
#include "platform/cgroup.hpp"
#include "procpool/options.hpp"
#include "procpool/stats.hpp"

namespace procpool::detail {

class WorkerCgroups;

/// One worker's capped cgroup, removed by its WorkerCgroups when released or destroyed.
class WorkerCgroup {
 public:
  WorkerCgroup() = default;
  WorkerCgroup(WorkerCgroup&& other) noexcept;
  WorkerCgroup& operator=(WorkerCgroup&& other) noexcept;
  ~WorkerCgroup();

  explicit operator bool() const noexcept { return owner_ != nullptr; }
  /// Its cgroup.procs, open for the new process to move itself in (platform::write_self_into).
  /// Close it once the process is started.
  platform::UniqueFd procs;
  /// What the cgroup's OOM counters say now (two file reads, about 0.1 ms on cgroup v1: only for a
  /// worker killed by a SIGKILL nobody in the pool sent).
  CgroupOomReading oom_reading() const;
  /// Removes the cgroup: at once, or once whatever still runs in it (the worker's guard, a job's
  /// children) is killed and gone.
  void release() noexcept;

 private:
  friend class WorkerCgroups;
  WorkerCgroups* owner_ = nullptr;
  platform::MemoryCgroup cgroup_;
};

class WorkerCgroups {
 public:
  using Clock = std::chrono::steady_clock;

  /// Makes the pool's directory, with the memory controller for its children, after removing the
  /// directories of dead pools there. Where this machine does not allow it, the cgroups are off
  /// (active() false, why_not() says why), or, with `options.required`, this throws ConfigError.
  /// `host_cgroup`: the host's memory cgroup, the default parent.
  WorkerCgroups(const MemoryCgroupOptions& options, std::uint64_t cap_bytes,
                const std::optional<platform::MemoryCgroup>& host_cgroup);
  /// finish(), with up to two seconds for what still runs in the cgroups to go.
  ~WorkerCgroups();
  WorkerCgroups(const WorkerCgroups&) = delete;
  WorkerCgroups& operator=(const WorkerCgroups&) = delete;

  bool active() const noexcept { return pool_.has_value(); }
  /// cgroup_v1 or cgroup_v2 while active, else sampled.
  MemoryEnforcement enforcement() const noexcept;
  /// Why the cgroups are off (empty while active).
  const std::string& why_not() const noexcept { return why_not_; }
  /// The pool's directory (empty while off).
  std::string directory() const { return pool_ ? pool_->directory : std::string(); }
  std::uint64_t cap_bytes() const noexcept { return caps_.max_bytes; }
  /// Directories of dead pools found at start: what ran in them was killed, and they are removed
  /// as removals of released cgroups are.
  std::size_t swept() const noexcept { return swept_; }

  /// A capped cgroup for the worker with `worker_id`: the one made ahead for it, or a new one.
  /// Throws std::system_error (nothing is left).
  WorkerCgroup make(std::uint64_t worker_id);
  /// Makes the cgroup of the worker that will have `worker_id` now, while nothing waits for it,
  /// so that a recycle does not wait for the mkdir and the limit (about 50 µs). Does nothing if
  /// that one is made already; a failure is left for make() to report.
  void make_ahead(std::uint64_t worker_id) noexcept;

  /// What retry_removals did.
  struct Removals {
    /// When to try again, if any removal is still waiting.
    std::optional<Clock::time_point> next;
    /// Directories given up on (in use for longer than removal_patience).
    std::vector<std::string> abandoned;
  };
  /// Tries again to remove the cgroups released while something still ran in them.
  Removals retry_removals(Clock::time_point now);

  /// Removes every cgroup left and the pool's directory, waiting up to `patience` for what still
  /// runs in them to go. Returns the directories it could not remove.
  std::vector<std::string> finish(std::chrono::milliseconds patience);

 private:
  friend class WorkerCgroup;
  /// Removes `cgroup` now if it is empty; otherwise kills what is left in it and removes it later
  /// (retry_removals).
  void remove(platform::MemoryCgroup cgroup) noexcept;
  /// Removes the directories of dead pools (of this pid namespace) in `parent`.
  void sweep(const platform::MemoryCgroup& parent);

  /// How long a released cgroup may stay in use before it is given up on.
  static constexpr std::chrono::seconds removal_patience{10};

  platform::MemoryCaps caps_;
  std::optional<platform::MemoryCgroup> pool_;
  std::string why_not_;
  std::size_t swept_ = 0;
  struct Pending {
    platform::MemoryCgroup cgroup;
    Clock::time_point next_try;
    Clock::duration interval;
    Clock::time_point give_up_at;
  };
  std::deque<Pending> pending_;
  /// The cgroup made ahead, and the id of the worker it is named for.
  std::uint64_t ahead_id_ = 0;
  WorkerCgroup ahead_;
};

}  // namespace procpool::detail
