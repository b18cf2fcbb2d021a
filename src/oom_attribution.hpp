// Whether the kernel's OOM killer ended a worker that died by a SIGKILL procpool did not send, and
// which memory limit was reached: read from the kernel's counters, never guessed.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "platform/cgroup.hpp"

namespace procpool::detail {

/// What a worker's own memory cgroup counted, read after the worker died and before the cgroup is
/// removed (per-worker cgroups).
struct CgroupOomReading {
  std::string directory;
  std::uint64_t oom_kills = 0;
  /// Its memory reached the cap (rather than the kill coming from a limit above it).
  bool reached_cap = false;
  std::uint64_t cap_bytes = 0;
};

/// What the counters say about one SIGKILL that procpool did not send.
struct OomFinding {
  enum class Verdict {
    /// The kernel's OOM killer sent it; `limit` says which memory ran out.
    oom_killer,
    /// The counters that would show an OOM kill show none: another process sent it.
    not_counted,
    /// No counter could be read.
    unknown,
  };
  Verdict verdict = Verdict::unknown;
  /// For oom_killer: the memory that ran out, as the end of a sentence ("the memory cgroup ...
  /// reached its limit of 640.0 MiB").
  std::string limit;
};

/// Keeps count of the OOM kills it has explained, so that each kill the kernel counts explains one
/// worker's death at most. Supervisor thread only.
class OomAttribution {
 public:
  /// `host_cgroup`: the host's memory cgroup, if it is in one. Its OOM kill counter, or where it
  /// has none the machine's (/proc/vmstat), is read now: kills before the pool are not its own.
  explicit OomAttribution(std::optional<platform::MemoryCgroup> host_cgroup);

  /// For a worker killed by a SIGKILL procpool did not send. `own`: what its own memory cgroup
  /// counted, if it had one; then that decides alone.
  OomFinding explain(const std::optional<CgroupOomReading>& own);

 private:
  /// The host's counter now, or the machine's.
  std::optional<std::uint64_t> read_counter() const;
  /// The limit that a kill counted by the host's or the machine's counter reached.
  std::string shared_limit() const;

  std::optional<platform::MemoryCgroup> host_cgroup_;
  /// The host cgroup has no readable counter: the machine's is used.
  bool machine_counter_ = false;
  /// Kills counted up to this value are explained (or were before the pool).
  std::optional<std::uint64_t> explained_;
};

}  // namespace procpool::detail
