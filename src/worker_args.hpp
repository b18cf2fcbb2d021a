// The reserved command-line arguments that turn a process into a worker.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace procpool {
class JobRegistry;
}

namespace procpool::detail {

/// argv: ... --procpool-worker <protocol version> <host pid>, with the doorbell on descriptor 3 and
/// the segment on descriptor 4 (platform::worker_doorbell_fd, platform::worker_segment_fd).
inline constexpr const char* worker_flag = "--procpool-worker";
/// Follows those three to make the process a fork server (StartMode::fork_server), with the
/// server's end of its request channel on descriptor 3 instead.
inline constexpr const char* fork_server_flag = "--procpool-fork-server";

struct WorkerArgs {
  /// The host's protocol_version, checked before anything else is read.
  std::uint32_t protocol = 0;
  int host_pid = 0;
  /// fork_server_flag as it is in argv (so that a forked worker can blank it out); nullptr: this
  /// is not a fork server.
  char* fork_server = nullptr;
};

/// Finds procpool's reserved arguments anywhere in argv; nullopt if absent.
std::optional<WorkerArgs> parse_worker_args(int argc, char** argv);

/// How the process running run_worker() came to be.
enum class WorkerOrigin { exec, fork_server };

/// Checks `args` (a message on stderr if they do not fit) and arms the parent-death signal: false
/// if the process must exit (with status 3) instead of serving.
bool accept_worker_args(const WorkerArgs& args);

/// The worker: attaches to the segment on its descriptors and runs jobs until told to stop.
/// Returns the process's exit status.
int run_worker(const WorkerArgs& args, const JobRegistry& registry, WorkerOrigin origin);

/// The fork server (fork_server.cpp): forks a worker for each request on its channel until the
/// channel closes. Returns this process's exit status; in a forked worker, the worker's.
int run_fork_server(const WorkerArgs& args, const JobRegistry& registry);

}  // namespace procpool::detail
