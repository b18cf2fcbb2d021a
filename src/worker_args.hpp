// The reserved command-line arguments that turn a process into a worker.
#pragma once

#include <optional>
#include <string>

namespace procpool::detail {

/// argv: ... --procpool-worker <segment name> <host pid>
inline constexpr const char* worker_flag = "--procpool-worker";

struct WorkerArgs {
  std::string segment_name;
  int host_pid = 0;
};

/// Finds procpool's reserved arguments anywhere in argv; nullopt if absent.
std::optional<WorkerArgs> parse_worker_args(int argc, char** argv);

}  // namespace procpool::detail
