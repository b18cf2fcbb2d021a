#include "spawner.hpp"

#include <fmt/format.h>

#include "policy.hpp"
#include "worker_args.hpp"
#include "worker_security.hpp"

namespace procpool::detail {

std::string describe_exit(const platform::ExitStatus& status) {
  if (status.signal) return "was killed by " + platform::signal_name(*status.signal);
  if (status.exit_code) return fmt::format("exited with code {}", *status.exit_code);
  return "exited (status unknown: SIGCHLD is ignored in this process)";
}

Spawner::Spawner(const PoolOptions& options, int host_pid, platform::Poller& poller,
                 Reporter& reporter)
    : options_(options),
      host_pid_(host_pid),
      poller_(poller),
      reporter_(reporter),
      host_stderr_(platform::file_info(2)),
      random_(std::random_device{}()) {
  if (options_.worker_command.empty()) {
    executable_ = platform::self_executable_path();
  } else {
    executable_ = options_.worker_command.front();
    base_arguments_.assign(options_.worker_command.begin() + 1, options_.worker_command.end());
  }
}

Spawner::Started Spawner::start(Clock::time_point now, std::optional<RecycleReason> predecessor,
                                WorkerCgroups* cgroups, SpinHints spin) {
  Started started;
  auto worker = std::make_unique<WorkerProcess>();
  worker->id = next_worker_id_++;
  worker->predecessor_reason = predecessor;
  LinkLimits limits;
  limits.ring_bytes = options_.ring_bytes;
  limits.max_result_bytes = options_.max_result_bytes;
  limits.lent_kept_accessible =
      options_.lent_buffers_after_job == LentBuffersAfterJob::kept_accessible;
  limits.tail_lines = options_.stderr_tail_lines;
  worker->link = WorkerLink(Segment::create(options_.ring_bytes, options_.max_payload_bytes,
                                            options_.max_result_bytes, host_pid_),
                            limits);
  SegmentHeader& header = worker->link.header();
  header.address_space_limit = options_.recycle.address_space_limit;
  if (!options_.security.dumpable) header.worker_flags |= worker_flag_non_dumpable;
  if (options_.spin.enabled) {
    header.spin_budget_ns =
        static_cast<std::uint32_t>(std::chrono::nanoseconds(options_.spin.budget).count());
    header.spin_hint.store(spin.hint, std::memory_order_relaxed);
    header.host_cpu.store(spin.host_cpu, std::memory_order_relaxed);
  }
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  worker->job_limit = jittered_job_limit(options_.recycle, unit(random_));
  worker->lifetime_limit = jittered_lifetime(options_.recycle, unit(random_));
  platform::UniqueFd doorbell = platform::make_eventfd();
  platform::Pipe output = platform::make_pipe();
  platform::DescriptorChannel channel = platform::make_descriptor_channel();

  platform::SpawnRequest request;
  request.executable = executable_;
  request.arguments = base_arguments_;
  request.arguments.insert(request.arguments.end(), {worker_flag, std::to_string(protocol_version),
                                                     std::to_string(host_pid_)});
  request.output_fd = output.write_end.get();
  request.doorbell_fd = doorbell.get();
  request.segment_fd = worker->link.segment().descriptor();
  request.channel_fd = channel.worker_end.get();
  apply_security(options_.security, request);
  if (options_.worker_oom_score_adj != 0) request.oom_score_adj = options_.worker_oom_score_adj;
  if (cgroups && cgroups->active()) {
    worker->cgroup = cgroups->make(worker->id);
    request.cgroup_procs_fd = worker->cgroup.procs.get();
  }
  std::optional<platform::SpawnedProcess> spawned;
  if (options_.start_mode == StartMode::exec) {
    spawned = platform::spawn(request);
  } else {
    fork_server_for_start(request, now, started).request_worker(request);
  }
  // The child, or the request on its way to the fork server, has its own copies. EOF comes when
  // the worker (and its children) exit; the segment stays mapped here.
  output.write_end.reset();
  worker->cgroup.procs.reset();
  worker->link.segment().close_descriptor();
  channel.worker_end.reset();
  worker->link.attach(std::move(doorbell), std::move(channel.host_end), std::move(output.read_end));
  worker->spawned_at = now;
  worker->timers.start_deadline = now + options_.start_timeout;
  if (spawned) {
    worker->pid = spawned->pid;
    worker->pidfd = std::move(spawned->pidfd);
    started.workers.push_back(std::move(worker));
  } else {
    forks_.push_back(std::move(worker));
  }
  return started;
}

ForkServer& Spawner::fork_server_for_start(const platform::SpawnRequest& request,
                                           Clock::time_point now, Started& started) {
  if (fork_server_) {
    if (std::optional<platform::ExitStatus> status = fork_server_->exited()) {
      std::string why =
          fmt::format("the fork server (pid {}) {}", fork_server_->pid(), describe_exit(*status));
      reporter_.log(LogLevel::warning, why + "; starting another");
      retire_fork_server(now, why, started);
    } else if (!fork_server_->accepting()) {
      retire_fork_server(
          now, fmt::format("the fork server (pid {}) takes no requests", fork_server_->pid()),
          started);
    }
  }
  if (!fork_server_) {
    auto server = std::make_unique<ForkServer>(request, fork_server_output());
    // Edge-triggered: take_answers() reads every answer there is; a server that goes away with
    // nothing unanswered is noticed at the next start, by exited() above.
    poller_.add(server->channel(), fork_answers_key, true);
    fork_server_ = std::move(server);
    reporter_.log(LogLevel::debug,
                  fmt::format("fork server started (pid {})", fork_server_->pid()));
  }
  return *fork_server_;
}

// The host's stderr only while fd 2 is the file it was when the pool was built. A host that had
// none then (a daemon closes 0-2) may since have opened another file that took number 2, a
// client's socket say, which the server would hold open and write into. A host that pointed fd 2
// at another file on purpose (dup2 of a new log file) loses only the server's own messages.
int Spawner::fork_server_output() const noexcept {
  if (!host_stderr_) return -1;
  const std::optional<platform::FileInfo> now = platform::file_info(2);
  const bool same = now && now->device == host_stderr_->device && now->inode == host_stderr_->inode;
  return same ? 2 : -1;
}

Spawner::Started Spawner::take_answers(Clock::time_point now) {
  Started started;
  while (fork_server_ && !forks_.empty()) {
    std::optional<platform::SpawnedProcess> spawned;
    try {
      spawned = fork_server_->take_answer();
    } catch (const std::exception& e) {
      forks_.pop_front();
      started.failures.emplace_back(e.what());
      if (!fork_server_->accepting()) retire_fork_server(now, e.what(), started);  // gone: all
      continue;
    }
    if (!spawned) break;  // not answered yet: the channel is readable again when it is
    std::unique_ptr<WorkerProcess> worker = std::move(forks_.front());
    forks_.pop_front();
    worker->pid = spawned->pid;
    worker->pidfd = std::move(spawned->pidfd);
    started.workers.push_back(std::move(worker));
  }
  return started;
}

Spawner::Started Spawner::check_deadlines(Clock::time_point now,
                                          std::optional<Clock::time_point>& next) {
  Started started;
  auto consider = [&](std::optional<Clock::time_point> t) {
    if (t && (!next || *t < *next)) next = t;
  };
  if (!forks_.empty()) {
    if (now >= *forks_.front()->timers.start_deadline) {
      retire_fork_server(now,
                         fmt::format("the fork server (pid {}) did not answer within {} ms",
                                     fork_server_->pid(), options_.start_timeout.count()),
                         started);
    } else {
      consider(forks_.front()->timers.start_deadline);
    }
  }
  if (!retiring_.empty()) {
    finish_retirements(now, true);
    for (const RetiringForkServer& retiring : retiring_)
      consider(retiring.deadline);
  }
  return started;
}

void Spawner::retire_fork_server(Clock::time_point now, const std::string& why, Started& started) {
  std::unique_ptr<ForkServer> server = std::move(fork_server_);
  if (!server) return;
  poller_.remove(server->channel());
  // Every start it was asked for is lost: a late answer's worker is killed at retirement.
  for (std::size_t i = 0; i < forks_.size(); ++i)
    started.failures.push_back(why);
  forks_.clear();
  Clock::time_point deadline = server->retire(now);
  if (server->finish_retirement(false)) return;  // it had exited already
  poller_.add(server->pidfd(), fork_server_exit_key);
  retiring_.push_back({std::move(server), deadline});
}

void Spawner::finish_retirements(Clock::time_point now, bool deadline_passed) {
  std::erase_if(retiring_, [&](RetiringForkServer& retiring) {
    ForkServer& server = *retiring.server;
    if (!server.finish_retirement(false)) {  // still running
      if (!deadline_passed || now < retiring.deadline) return false;
      server.finish_retirement(true);
      reporter_.log(
          LogLevel::warning,
          fmt::format("the retired fork server (pid {}) did not exit within its grace period; "
                      "it was killed",
                      server.pid()));
    }
    poller_.remove(server.pidfd());
    return true;
  });
}

void Spawner::abandon_starts(Clock::time_point now) {
  if (forks_.empty()) return;
  forks_.clear();
  Started nobody_waits;  // the pool is stopping: these starts are not counted as failures
  retire_fork_server(now, {}, nobody_waits);
}

void Spawner::stop() noexcept {
  fork_server_.reset();
  retiring_.clear();
}

void Spawner::snapshot(Clock::time_point now, std::vector<WorkerStats>& out) const {
  for (const auto& worker : forks_)
    out.push_back(worker->snapshot(now));
}

}  // namespace procpool::detail
