// The fork server: the host's side (ForkServer) and the server's loop (run_fork_server).
#include "fork_server.hpp"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include "platform/cgroup.hpp"
#include "worker_args.hpp"

namespace procpool::detail {

ForkServer::ForkServer(platform::SpawnRequest request, int output_fd) {
  platform::DescriptorChannel channel = platform::make_descriptor_channel();
  request.arguments.emplace_back(fork_server_flag);
  request.doorbell_fd = channel.worker_end.get();  // the server's requests arrive on fd 3
  request.segment_fd = -1;
  request.channel_fd = -1;
  // The server stays in the host's memory cgroup: each worker it forks moves into its own.
  request.cgroup_procs_fd = -1;
  // Each worker's output goes through its own pipe, as a spawned worker's does.
  request.output_fd = output_fd;
  platform::SpawnedProcess spawned = platform::spawn(request);
  channel_ = std::move(channel.host_end);
  pidfd_ = std::move(spawned.pidfd);
  pid_ = spawned.pid;
}

namespace {

/// Kills and reaps every worker whose pid is in the server's answers still in `channel`: workers
/// forked for requests that were given up on, which nobody else knows of. Call only once the
/// server has exited, so that no answer is still to come.
void kill_reported_workers(int channel) noexcept {
  for (;;) {
    std::int32_t pid = 0;
    if (platform::try_receive_value(channel, pid) != platform::Received::value) return;
    if (pid <= 0) continue;
    try {
      platform::SpawnedProcess orphan = platform::watch_child(pid);
      platform::kill_process(orphan.pidfd.get());
      platform::reap_blocking(orphan.pid);
    } catch (const std::exception&) {
      // pidfd_open failed: watch_child killed and reaped it before throwing.
    }
  }
}

}  // namespace

ForkServer::~ForkServer() {
  // A server killed between a fork and its answer would leave a worker nobody knows of: one with
  // requests unanswered, or retired, is told that no request follows, answers what it was sent and
  // exits; only one that hangs is killed.
  const bool answers_to_collect = !accepting_ || unanswered_ > 0;
  if (!reaped_) {
    if (answers_to_collect) {
      platform::shutdown_sending(channel_.get());
      platform::wait_for_exit(pidfd_.get(), retirement_grace);
    }
    platform::kill_process(pidfd_.get());
    platform::reap_blocking(pid_);
  }
  if (answers_to_collect) kill_reported_workers(channel_.get());
}

void ForkServer::request_worker(const platform::SpawnRequest& request) {
  const int descriptors[] = {request.output_fd, request.doorbell_fd, request.segment_fd,
                             request.channel_fd, request.cgroup_procs_fd};
  const std::size_t count = request.cgroup_procs_fd >= 0 ? 5 : 4;
  if (!accepting_ || !platform::send_descriptors(channel_.get(), descriptors, count)) {
    accepting_ = false;
    throw std::system_error(EPIPE, std::generic_category(),
                            "the fork server (pid " + std::to_string(pid_) + ") takes no requests");
  }
  ++unanswered_;
}

std::optional<platform::SpawnedProcess> ForkServer::take_answer() {
  if (unanswered_ == 0) return std::nullopt;
  std::int32_t answer = 0;
  switch (platform::try_receive_value(channel_.get(), answer)) {
    case platform::Received::nothing_yet:
      return std::nullopt;
    case platform::Received::closed:
      accepting_ = false;
      unanswered_ = 0;
      throw std::system_error(
          EPIPE, std::generic_category(),
          "the fork server (pid " + std::to_string(pid_) + ") went away before it answered");
    case platform::Received::value:
      break;
  }
  --unanswered_;
  if (answer == fork_refused_threads) {
    throw std::system_error(
        EDEADLK, std::generic_category(),
        "the fork server (pid " + std::to_string(pid_) +
            ") does not fork: its process runs more than one thread, started before main() "
            "called run_worker_if_requested() (by a static initialiser, say), and a fork copies "
            "only the calling thread, with any lock the others hold; start that thread after "
            "run_worker_if_requested(), or use StartMode::exec");
  }
  if (answer == fork_refused_thread_state) {
    throw std::system_error(
        ENOTSUP, std::generic_category(),
        "the fork server (pid " + std::to_string(pid_) +
            ") does not fork: it cannot learn where glibc keeps its thread id "
            "(prctl(PR_GET_TID_ADDRESS) needs a kernel built with CONFIG_CHECKPOINT_RESTORE), "
            "and a worker forked without it would lock every mutex under the server's thread "
            "id and leave robust mutexes locked when it dies; use StartMode::exec");
  }
  if (answer <= 0) {
    throw std::system_error(answer < 0 ? -answer : EPROTO, std::generic_category(),
                            "fork in the fork server (pid " + std::to_string(pid_) + ")");
  }
  return platform::watch_child(answer);
}

std::chrono::steady_clock::time_point ForkServer::retire(
    std::chrono::steady_clock::time_point now) noexcept {
  accepting_ = false;
  platform::shutdown_sending(channel_.get());
  return now + retirement_grace;
}

bool ForkServer::finish_retirement(bool force) noexcept {
  if (!reaped_) {
    if (!force && !platform::wait_for_exit(pidfd_.get(), std::chrono::milliseconds(0))) {
      return false;
    }
    platform::kill_process(pidfd_.get());
    platform::reap_blocking(pid_);
    reaped_ = true;
  }
  kill_reported_workers(channel_.get());
  unanswered_ = 0;
  return true;
}

std::optional<platform::ExitStatus> ForkServer::exited() noexcept {
  if (reaped_) return platform::ExitStatus{};
  std::optional<platform::ExitStatus> status = platform::try_reap(pid_);
  if (status) reaped_ = true;
  return status;
}

int run_fork_server(const WorkerArgs& args, const JobRegistry& registry) {
  if (!accept_worker_args(args)) return 3;
  // A group of its own, as a worker's: signals aimed at the host's group (a terminal's ^C) are not
  // for it. Not dumpable: a worker of the same user could otherwise ptrace this process and so
  // reach every worker forked after; each worker sets its own (run_worker).
  if (!platform::leave_process_group() || !platform::set_dumpable(false)) {
    std::perror("procpool fork server: setpgid or prctl(PR_SET_DUMPABLE)");
    return 3;
  }
  const int requests = platform::worker_doorbell_fd;
  platform::set_cloexec(requests);
  // A fork copies only the calling thread: a thread started before main() got here (a static
  // initialiser's) would be missing from every worker, and any lock it held would stay taken
  // there for good. Such a server answers every request with a refusal the host explains. Where
  // the count is unknown (no /proc), it forks, as it did before it counted.
  std::optional<std::size_t> threads = platform::thread_count();
  std::int32_t refusal = 0;
  if (threads && *threads != 1) {
    refusal = fork_refused_threads;
  } else if (const char* why = platform::prepare_fork_sibling()) {
    // Its workers would run with this process's thread id in glibc's state: a server that cannot
    // fork as fork() does refuses, and the host says what to do.
    std::fprintf(stderr, "procpool fork server: %s\n", why);
    refusal = fork_refused_thread_state;
  }
  for (;;) {
    std::vector<platform::UniqueFd> received = platform::receive_descriptors(requests, 5);
    if (received.empty()) return 0;  // the pool closed the channel: it is done with this server
    if (received.size() < 4 || refusal != 0) {
      if (!platform::send_value(requests, refusal != 0 ? refusal : -EPROTO)) return 0;
      continue;
    }
    std::fflush(nullptr);  // nothing buffered here is written again by the child
    int pid = platform::fork_sibling(nullptr);
    if (pid == 0) {
      // Into its memory cgroup before anything else, so that all it allocates is charged there.
      const bool placed = received.size() < 5 || platform::write_self_into(received[4].get());
      const int error = errno;
      if (!platform::place_forked_worker_descriptors(received[0].get(), received[1].get(),
                                                     received[2].get(), received[3].get())) {
        std::_Exit(3);  // nowhere to say why: its output is not in place
      }
      for (platform::UniqueFd& fd : received)
        fd.release();  // moved or closed by the call above
      if (!placed) {
        std::fprintf(stderr, "procpool worker: cannot move into its memory cgroup: %s\n",
                     std::strerror(error));
        return 3;
      }
      // What ps and /proc/<pid>/cmdline show is this process's argv: a worker's, from here on.
      std::memset(args.fork_server, 0, std::strlen(args.fork_server));
      WorkerArgs worker = args;
      worker.fork_server = nullptr;
      return run_worker(worker, registry, WorkerOrigin::fork_server);
    }
    if (!platform::send_value(requests, pid > 0 ? pid : -errno)) return 0;  // the host is gone
  }
}

}  // namespace procpool::detail
