// The fork server: the host's side (ForkServer) and the server's loop (run_fork_server).
#include "fork_server.hpp"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include "platform/cgroup.hpp"
#include "worker_args.hpp"

namespace procpool::detail {

ForkServer::ForkServer(platform::SpawnRequest request, int output_fd) {
  platform::DescriptorChannel channel = platform::make_descriptor_channel();
  platform::UniqueFd slots =
      platform::make_shared_memory(pid_slots * sizeof(std::int32_t), "procpool-fork-server-pids");
  pid_slots_ = SharedMapping::map(slots.get(), 0, SharedMapping::Access::read_write);
  request.arguments.emplace_back(fork_server_flag);
  request.doorbell_fd = channel.worker_end.get();  // the server's requests arrive on fd 3
  request.segment_fd = slots.get();                // and its pid slots on fd 4
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

/// Kills and reaps `pid`, a worker forked for a request that was given up on, which nobody else
/// knows of.
void kill_unclaimed_worker(int pid) noexcept {
  try {
    platform::SpawnedProcess orphan = platform::watch_child(pid);
    platform::kill_process(orphan.pidfd.get());
    platform::reap_blocking(orphan.pid);
  } catch (const std::exception&) {
    // pidfd_open failed: watch_child killed and reaped it before throwing.
  }
}

}  // namespace

std::atomic_ref<std::int32_t> ForkServer::pid_slot(std::uint64_t request) const noexcept {
  auto* slots = reinterpret_cast<std::int32_t*>(pid_slots_.data());
  return std::atomic_ref<std::int32_t>(slots[request % pid_slots]);
}

void ForkServer::kill_unclaimed_workers() noexcept {
  while (answered_ < requested_ && !channel_closed_) {
    std::int32_t pid = 0;
    if (platform::try_receive_value(channel_.get(), pid) != platform::Received::value) break;
    pid_slot(answered_++).store(0, std::memory_order_relaxed);
    if (pid > 0) kill_unclaimed_worker(pid);
  }
  // Requests the server never answered: a slot it forked for holds the pid (the kernel wrote it
  // in the clone); the others still hold the 0 this side wrote when the slot was last answered.
  for (; answered_ < requested_; ++answered_) {
    const std::int32_t pid = pid_slot(answered_).exchange(0, std::memory_order_relaxed);
    if (pid > 0) kill_unclaimed_worker(pid);
  }
}

ForkServer::~ForkServer() {
  // A server killed between a fork and its answer would leave a worker only its pid slot names:
  // one with requests unanswered, or retired, is told that no request follows, answers what it
  // was sent and exits; only one that hangs is killed.
  const bool answers_to_collect = !accepting_ || unanswered() > 0;
  if (!reaped_) {
    if (answers_to_collect) {
      platform::shutdown_sending(channel_.get());
      platform::wait_for_exit(pidfd_.get(), retirement_grace);
    }
    platform::kill_process(pidfd_.get());
    platform::reap_blocking(pid_);
  }
  kill_unclaimed_workers();
}

void ForkServer::request_worker(const platform::SpawnRequest& request) {
  const int descriptors[] = {request.output_fd, request.doorbell_fd, request.segment_fd,
                             request.channel_fd, request.cgroup_procs_fd};
  const std::size_t count = request.cgroup_procs_fd >= 0 ? 5 : 4;
  if (accepting_ && unanswered() >= pid_slots) {
    throw std::system_error(EAGAIN, std::generic_category(),
                            "the fork server (pid " + std::to_string(pid_) + ") has " +
                                std::to_string(pid_slots) + " starts unanswered already");
  }
  if (!accepting_ || !platform::send_descriptors(channel_.get(), descriptors, count)) {
    accepting_ = false;
    throw std::system_error(EPIPE, std::generic_category(),
                            "the fork server (pid " + std::to_string(pid_) + ") takes no requests");
  }
  ++requested_;
}

std::optional<platform::SpawnedProcess> ForkServer::take_answer() {
  if (unanswered() == 0 || channel_closed_) return std::nullopt;
  std::int32_t answer = 0;
  switch (platform::try_receive_value(channel_.get(), answer)) {
    case platform::Received::nothing_yet:
      return std::nullopt;
    case platform::Received::closed:
      // What it forked for the requests left is killed once it is reaped (finish_retirement).
      accepting_ = false;
      channel_closed_ = true;
      throw std::system_error(
          EPIPE, std::generic_category(),
          "the fork server (pid " + std::to_string(pid_) + ") went away before it answered");
    case platform::Received::value:
      break;
  }
  pid_slot(answered_++).store(0, std::memory_order_relaxed);
  auto refusal = [this](int code, const char* why) {
    return std::system_error(
        code, std::generic_category(),
        "the fork server (pid " + std::to_string(pid_) + ") does not fork: " + why);
  };
  if (answer == fork_refused_threads) {
    throw refusal(EDEADLK,
                  "its process runs more than one thread, started before main() called "
                  "run_worker_if_requested() (by a static initialiser, say), and a fork copies "
                  "only the calling thread, with any lock the others hold; start that thread "
                  "after run_worker_if_requested(), or use StartMode::exec");
  }
  if (answer == fork_refused_thread_state) {
    throw refusal(ENOTSUP,
                  "it cannot learn where glibc keeps its thread id (prctl(PR_GET_TID_ADDRESS) "
                  "needs a kernel built with CONFIG_CHECKPOINT_RESTORE), and a worker forked "
                  "without it would lock every mutex under the server's thread id and leave "
                  "robust mutexes locked when it dies; use StartMode::exec");
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
  kill_unclaimed_workers();
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
  // The host's pid slots (ForkServer): the kernel writes each worker's pid there as it forks it.
  // Not in the workers (MADV_DONTFORK). None from a host that sends none, or if they cannot be
  // kept from the workers, whose jobs could otherwise write pids the host would kill.
  // (Held by pointer: a forked worker drops it without unmapping, as it has no such mapping and
  // the address may be another's by the time it returns.)
  std::unique_ptr<SharedMapping> pid_slots;
  std::size_t slot_count = 0;
  if (platform::file_info(platform::worker_segment_fd)) {
    platform::UniqueFd slots_fd(platform::worker_segment_fd);
    try {
      pid_slots = std::make_unique<SharedMapping>(
          SharedMapping::map(slots_fd.get(), 0, SharedMapping::Access::read_write));
      if (platform::keep_from_forks(pid_slots->data(), pid_slots->size())) {
        slot_count = pid_slots->size() / sizeof(std::int32_t);
      }
    } catch (const std::exception&) {
      // Nothing mapped: the workers' pids come only in the answers, as from an older server.
    }
  }
  std::uint64_t request = 0;
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
    std::int32_t* pid_slot =
        slot_count == 0 ? nullptr
                        : reinterpret_cast<std::int32_t*>(pid_slots->data()) + request % slot_count;
    ++request;
    if (received.size() < 4 || refusal != 0) {
      if (!platform::send_value(requests, refusal != 0 ? refusal : -EPROTO)) return 0;
      continue;
    }
    std::fflush(nullptr);  // nothing buffered here is written again by the child
    int pid = platform::fork_sibling(pid_slot);
    if (pid == 0) {
      static_cast<void>(pid_slots.release());  // not mapped here (MADV_DONTFORK)
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
