// The reserved command-line arguments that turn a process into a worker.
#pragma once

#include <optional>
#include <string>

namespace procpool::detail {

/// argv: ... --procpool-worker <protocol version> <host pid>, with the doorbell on descriptor 3 and
/// the segment on descriptor 4 (platform::worker_doorbell_fd, platform::worker_segment_fd).
inline constexpr const char* worker_flag = "--procpool-worker";

struct WorkerArgs {
  /// The host's protocol_version, checked before anything else is read.
  std::uint32_t protocol = 0;
  int host_pid = 0;
};

/// Finds procpool's reserved arguments anywhere in argv; nullopt if absent.
std::optional<WorkerArgs> parse_worker_args(int argc, char** argv);

}  // namespace procpool::detail
