// The fork server (StartMode::fork_server): one process, executed like a worker, that makes each
// of the pool's workers by forking itself. This is the host's side; the server's own loop is
// run_fork_server (worker_args.hpp, fork_server.cpp).
//
// Protocol, on a DescriptorChannel (SOCK_SEQPACKET): the host sends one message per worker carrying
// four descriptors (output, doorbell, segment, channel); the server forks, places them in the child
// where a spawned worker finds them, and answers with one 32-bit value: the child's pid, or minus
// the errno of a failed fork, or fork_refused_threads. The worker is a child of the host
// (CLONE_PARENT), not of the server.
#pragma once

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <optional>

#include "platform/platform.hpp"

namespace procpool::detail {

/// The server's answer when it will not fork because its process runs more than one thread.
inline constexpr std::int32_t fork_refused_threads = -EDEADLK;

/// Host side of one fork server. Used by the supervisor thread only.
class ForkServer {
 public:
  /// Starts the server: `request` is a worker's (executable, arguments with the reserved worker
  /// arguments, environment, restrictions), to which this adds fork_server_flag and the server's
  /// own descriptors. Returns at once; the server's start overlaps the first request. Throws
  /// std::system_error if it cannot be started.
  explicit ForkServer(platform::SpawnRequest request);
  /// Stops the server (SIGKILL: it holds nothing but the channel) and reaps it. One that did not
  /// answer in time first gets up to unanswered_exit_grace to answer and exit by itself, and
  /// every worker it reported then is killed and reaped.
  ~ForkServer();
  ForkServer(const ForkServer&) = delete;
  ForkServer& operator=(const ForkServer&) = delete;

  /// Forks a worker whose descriptors are request.output_fd, doorbell_fd, segment_fd and
  /// channel_fd (all four required; the rest of `request` was applied to the server). Waits up to
  /// `timeout` for the answer. Throws std::system_error if the server cannot fork, or has gone or
  /// did not answer in time (then usable() is false from now on).
  platform::SpawnedProcess fork_worker(const platform::SpawnRequest& request,
                                       std::chrono::milliseconds timeout);

  /// False once a request failed for want of an answer: discard this server and start another.
  bool usable() const noexcept { return usable_; }

  /// How the server ended, once it has (it is reaped then); nullopt while it runs.
  std::optional<platform::ExitStatus> exited() noexcept;

  int pid() const noexcept { return pid_; }

 private:
  /// How long a discarded server that did not answer in time gets to answer and exit.
  static constexpr std::chrono::milliseconds unanswered_exit_grace{2000};

  platform::UniqueFd channel_;
  platform::UniqueFd pidfd_;
  int pid_ = 0;
  bool reaped_ = false;
  bool usable_ = true;
};

}  // namespace procpool::detail
