// The fork server (StartMode::fork_server): one process, executed like a worker, that makes each
// of the pool's workers by forking itself. This is the host's side; the server's own loop is
// run_fork_server (worker_args.hpp, fork_server.cpp).
//
// Protocol, on a DescriptorChannel (SOCK_SEQPACKET): the host sends one message per worker carrying
// four descriptors (output, doorbell, segment, channel), and a fifth, the cgroup.procs of the
// worker's memory cgroup, when it has one; the server forks, the child moves itself into that
// cgroup first, places the four where a spawned worker finds them, and the server answers with one
// 32-bit value: the child's pid, or minus the errno of a failed fork, or fork_refused_threads or
// fork_refused_thread_state. The worker is a child of the host (CLONE_PARENT), not of the server,
// and starts with glibc's per-thread state as fork() leaves it (platform::fork_sibling()).
//
// The server is also given, on its descriptor 4, a page of shared memory the host made: slot
// n % slots holds the pid of the worker forked for request n, written by the kernel in the clone
// itself (CLONE_PARENT_SETTID), before the server runs on. The host zeroes a slot when its answer
// comes. A server that dies between a fork and its answer (SIGKILL, say) has so left the pid where
// the host reads it once the server is gone: no worker is the host's child without the host
// knowing. The forked workers do not inherit the page (MADV_DONTFORK).
#pragma once

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <optional>

#include "channel/shared_mapping.hpp"
#include "platform/platform.hpp"

namespace procpool::detail {

/// The server's answer when it will not fork because its process runs more than one thread.
inline constexpr std::int32_t fork_refused_threads = -EDEADLK;
/// The server's answer when it will not fork because it cannot leave glibc's thread state in the
/// child as fork() would (platform::prepare_fork_sibling() failed).
inline constexpr std::int32_t fork_refused_thread_state = -ENOTSUP;

/// Host side of one fork server. Used by the supervisor thread only. Requests are asynchronous:
/// request_worker() sends one and returns; the answers come on channel(), in the order of the
/// requests, and take_answer() reads them, so the supervisor thread never waits for the server.
class ForkServer {
 public:
  /// Starts the server: `request` is a worker's (executable, arguments with the reserved worker
  /// arguments, environment, restrictions), to which this adds fork_server_flag and the server's
  /// own descriptors. `output_fd` becomes the server's stdout and stderr, on which it prints only
  /// why it cannot serve: the host's stderr, or -1 for /dev/null. Returns at once; the server's
  /// start overlaps the first request. Throws std::system_error if it cannot be started.
  ForkServer(platform::SpawnRequest request, int output_fd);
  /// Stops the server (SIGKILL: it holds nothing but the channel) and reaps it. One that was
  /// retired, or has requests unanswered, first gets up to retirement_grace to answer and exit by
  /// itself (this waits), and every worker it forked for a request whose answer was not taken
  /// (reported late, or never) is then killed and reaped. Waits for nothing once
  /// finish_retirement() has returned true.
  ~ForkServer();
  ForkServer(const ForkServer&) = delete;
  ForkServer& operator=(const ForkServer&) = delete;

  /// Asks the server to fork a worker whose descriptors are request.output_fd, doorbell_fd,
  /// segment_fd and channel_fd (all four required), in the memory cgroup of
  /// request.cgroup_procs_fd if it is given (the rest of `request` was applied to the server); the
  /// message carries copies of them, which the caller may close at once. Returns
  /// without waiting; the answer is read with take_answer(). Throws std::system_error if the
  /// server takes no requests (it is gone, or retired).
  void request_worker(const platform::SpawnRequest& request);

  /// Reads the answer to the oldest unanswered request, without waiting: the forked worker, or
  /// nullopt if that answer has not come (or nothing is unanswered). Throws std::system_error if
  /// the server could not or would not fork (that request is answered), or if it closed the
  /// channel (it is gone: every unanswered request is then lost, and accepting() is false; a
  /// worker it forked for one is killed and reaped by finish_retirement()).
  std::optional<platform::SpawnedProcess> take_answer();

  /// False once the server is gone or retired: discard this server and start another.
  bool accepting() const noexcept { return accepting_; }

  /// Readable when an answer comes, or when the server goes (poll it edge-triggered).
  int channel() const noexcept { return channel_.get(); }
  /// Readable once the server has exited.
  int pidfd() const noexcept { return pidfd_.get(); }

  /// Gives up on the server (it did not answer in time): it gets no further request, and is told
  /// that none follows, so that it answers what it was sent and exits. From `now`, it has until
  /// the returned time to do so; then call finish_retirement(true).
  std::chrono::steady_clock::time_point retire(std::chrono::steady_clock::time_point now) noexcept;

  /// For a retired server: once it has exited, or at once if `force` (SIGKILL), reaps it and kills
  /// and reaps every worker it forked for a request whose answer was not taken (reported since it
  /// was retired, or never reported: its pid slot says), which nobody else knows of. True when
  /// done; false while it is still running and not `force`d.
  bool finish_retirement(bool force) noexcept;

  /// How the server ended, once it has (it is reaped then); nullopt while it runs.
  std::optional<platform::ExitStatus> exited() noexcept;

  int pid() const noexcept { return pid_; }

 private:
  /// How long a retired server gets to answer and exit.
  static constexpr std::chrono::milliseconds retirement_grace{2000};

  /// How many requests it may have unanswered: the pid slots in its page.
  static constexpr std::size_t pid_slots = 1024;

  std::uint64_t unanswered() const noexcept { return requested_ - answered_; }
  /// The pid slot of request number `request`.
  std::atomic_ref<std::int32_t> pid_slot(std::uint64_t request) const noexcept;
  /// Kills and reaps the workers of every request whose answer was not taken: first those named
  /// by the answers still in the channel, then those only their pid slots name. Call only once
  /// the server has exited (it is reaped), so that no answer or fork is still to come.
  void kill_unclaimed_workers() noexcept;

  SharedMapping pid_slots_;
  platform::UniqueFd channel_;
  platform::UniqueFd pidfd_;
  int pid_ = 0;
  /// Requests sent, and answers taken (or given up), since the server started.
  std::uint64_t requested_ = 0;
  std::uint64_t answered_ = 0;
  bool channel_closed_ = false;
  bool reaped_ = false;
  bool accepting_ = true;
};

}  // namespace procpool::detail
