// Starting workers, as named steps: a worker's segment and descriptors, its jittered limits, its
// memory cgroup, the spawn request with the pool's restrictions, then either an exec at once
// (StartMode::exec) or a request to the fork server, whose answers come later. The Spawner owns
// the worker ids, the jitter's random numbers, the fork server in service, the starts it has not
// answered and the servers retired. It returns what happened (processes started, starts failed)
// for the supervisor to watch or count; it never calls back into it. Supervisor thread only
// (stats() reads the starts under way under the supervisor's state lock).
#pragma once

#include <chrono>
#include <deque>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "fork_server.hpp"
#include "platform/platform.hpp"
#include "procpool/options.hpp"
#include "reporter.hpp"
#include "worker_cgroups.hpp"
#include "worker_process.hpp"

namespace procpool::detail {

/// How a process ended, in words ("was killed by SIGKILL", "exited with code 3").
std::string describe_exit(const platform::ExitStatus& status);

class Spawner {
 public:
  using Clock = std::chrono::steady_clock;

  /// What starting, or the fork server's answers, gave.
  struct Started {
    /// Processes started (pid and pidfd set), for the supervisor to watch, oldest first.
    std::vector<std::unique_ptr<WorkerProcess>> workers;
    /// Why each start that failed did.
    std::vector<std::string> failures;
  };

  /// What a new worker's segment tells it of the supervisor thread (SpinPolicy).
  struct SpinHints {
    std::uint32_t hint = 0;
    int host_cpu = -1;
  };

  /// Starts workers for `options`, on the fork server's answers watched by `poller`; logs what
  /// only an operator needs (a server started or replaced) to `reporter`.
  Spawner(const PoolOptions& options, int host_pid, platform::Poller& poller, Reporter& reporter);

  /// Starts one worker, in its memory cgroup made by `cgroups` (if given and active). Spawned at
  /// once with StartMode::exec; otherwise asked of the fork server, and found later in
  /// take_answers(). Throws std::system_error.
  Started start(Clock::time_point now, std::optional<RecycleReason> predecessor,
                WorkerCgroups* cgroups, SpinHints spin);
  /// Reads the fork server's answers (its channel is readable).
  Started take_answers(Clock::time_point now);
  /// Acts on the fork server's deadlines: a server that did not answer the oldest start in time
  /// is retired (its starts fail), a retired one past its grace period is killed. Returns the
  /// failures and the next deadline.
  Started check_deadlines(Clock::time_point now, std::optional<Clock::time_point>& next);
  /// Finishes the retirement of each retired server that has exited.
  void finish_retirements(Clock::time_point now) { finish_retirements(now, false); }
  /// The pool stops: the starts not answered are not wanted (the server is retired, and each worker
  /// it reports late is killed).
  void abandon_starts(Clock::time_point now);
  /// Forgets the starts not answered (the pool has stopped).
  void forget_starts() noexcept { forks_.clear(); }
  /// Ends every server now (each gets its grace period; the late workers are killed).
  void stop() noexcept;

  /// Starts asked of the fork server and not answered: each counts as a worker starting.
  std::size_t starting() const noexcept { return forks_.size(); }
  /// No server is started while a retired one still runs, so that a server that hangs does not
  /// pile up successors.
  bool may_start() const noexcept { return retiring_.empty(); }
  /// What stats() shows of each start not answered.
  void snapshot(Clock::time_point now, std::vector<WorkerStats>& out) const;
  /// The id the next worker gets (its memory cgroup may be made ahead).
  std::uint64_t next_worker_id() const noexcept { return next_worker_id_; }

 private:
  /// The fork server in service, started (or replaced, if it went away) here. Throws
  /// std::system_error.
  ForkServer& fork_server_for_start(const platform::SpawnRequest& request, Clock::time_point now,
                                    Started& started);
  /// The new fork server's stdout and stderr: 2, or -1 for /dev/null.
  int fork_server_output() const noexcept;
  /// Takes the fork server out of service: the starts it has not answered fail with `why` (added
  /// to `started`); it gets a grace period to answer and exit.
  void retire_fork_server(Clock::time_point now, const std::string& why, Started& started);
  void finish_retirements(Clock::time_point now, bool deadline_passed);

  const PoolOptions& options_;
  const int host_pid_;
  platform::Poller& poller_;
  Reporter& reporter_;
  std::string executable_;
  std::vector<std::string> base_arguments_;
  /// What the host's fd 2 was when the pool was built; nullopt if it was closed.
  const std::optional<platform::FileInfo> host_stderr_;
  std::uint64_t next_worker_id_ = 1;
  std::mt19937_64 random_;

  /// The server in service, once the first worker is started.
  std::unique_ptr<ForkServer> fork_server_;
  /// Workers asked of fork_server_ and not answered yet, oldest first (the server answers in
  /// order).
  std::deque<std::unique_ptr<WorkerProcess>> forks_;
  /// Servers taken out of service and still running, each until its grace period ends.
  struct RetiringForkServer {
    std::unique_ptr<ForkServer> server;
    Clock::time_point deadline;
  };
  std::vector<RetiringForkServer> retiring_;
};

}  // namespace procpool::detail
