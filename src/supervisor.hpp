// The supervisor: one event-loop thread per pool that owns the workers, dispatches jobs, reads
// results, watches deaths, memory and timers, applies the recycle policy, and gives every job
// exactly one outcome.
//
// Threads: submitters push onto the queue of the JobIntake, which takes its own lock inside it and
// calls out of it to nobody; the supervisor thread does all worker I/O and holds state_mutex_
// while it changes worker state, so stats() sees a consistent picture. Lock order: state_mutex_,
// then the intake's. Outcomes (promises, callbacks) are delivered with no lock held. No lock here
// is ever shared with a worker process.
//
// One exception to "the supervisor thread does all worker I/O": Pool::call may run its own job on
// an idle worker from the calling thread and take the result itself, under state_mutex_ (see
// supervisor_call.cpp); the supervisor thread sleeps through it.
//
// The supervisor coordinates parts that own their state: the JobIntake (the queue, shared with
// submitters), the Reporter (log, events, counters), the Spawner (starting workers, the fork
// server), and each WorkerProcess's link, memory, timers and life. Its own code is split by
// concern: supervisor.cpp (public entry points, outcomes), supervisor_loop.cpp (the loop, timers,
// sleeping and polling), supervisor_dispatch.cpp (dispatch, prefetch, taking back jobs sent
// ahead), supervisor_channel.cpp (what a worker's link returned), supervisor_lifecycle.cpp
// (starts, exits, stopping, the recycle policy, restart backoff), supervisor_call.cpp (Pool::call's
// direct hand-off).
#pragma once

#include <array>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <random>
#include <span>
#include <thread>
#include <vector>

#include "adaptive_spin.hpp"
#include "job_intake.hpp"
#include "job_stats.hpp"
#include "lending.hpp"
#include "memory_budget.hpp"
#include "oom_attribution.hpp"
#include "policy.hpp"
#include "procpool/events.hpp"
#include "reporter.hpp"
#include "spawner.hpp"
#include "worker_cgroups.hpp"
#include "worker_process.hpp"

namespace procpool::detail {

/// A failed outcome for a job that had `attempts` attempts.
inline JobResult job_failure(ErrorKind kind, std::string message, unsigned attempts = 0) {
  JobError error;
  error.kind = kind;
  error.message = std::move(message);
  error.attempts = attempts;
  return JobResult::failure(std::move(error));
}

class Supervisor {
 public:
  explicit Supervisor(PoolOptions options);
  ~Supervisor();

  JobId submit(std::string_view name, Bytes payload, const SubmitOptions& options,
               OutcomeSink sink);
  /// Submits one job per payload (sinks[i] gets payloads[i]'s outcome) under one lock, waking the
  /// supervisor at most once per chunk queued. Returns the first job's id; the ids are consecutive.
  JobId submit_batch(std::string_view name, std::vector<Bytes> payloads,
                     const SubmitOptions& options, std::vector<OutcomeSink> sinks);
  /// Pool::lend and Pool::submit_in_place.
  LentBuffer lend(std::size_t bytes);
  JobId submit_in_place(std::string_view name, LentBuffer input, LentBuffer output,
                        const SubmitOptions& options, OutcomeSink sink);
  /// Pool::call: runs the job and returns once its outcome is in `sink`, or once the job has been
  /// handed to the supervisor thread (which then delivers it). Never from the supervisor thread.
  JobId call(std::string_view name, Bytes payload, const SubmitOptions& options, OutcomeSink sink);
  /// Pool::call_in_place: as call, for an in-place job.
  JobId call_in_place(std::string_view name, LentBuffer input, LentBuffer output,
                      const SubmitOptions& options, OutcomeSink sink);
  /// Pool::cancel.
  bool cancel(JobId id, CancelMode mode);
  PoolStats stats() const;
  void shutdown(std::chrono::milliseconds drain);

  /// Whether this process is a copy of the pool's host made by a fork (docs/gotchas.md): the
  /// supervisor thread, the workers and the fork server are the host's, and a lock held at the fork
  /// stays held, so the copy must answer without taking one. `exact` also catches a copy made
  /// without fork() (_Fork, clone), by comparing pids: a system call, too slow for every job, where
  /// the fork counter (platform::fork_generation) is one load.
  bool forked_copy(bool exact) const noexcept;

 private:
  struct Outcome {
    OutcomeSink sink;
    JobResult result;
  };

  // supervisor.cpp: submitting.
  /// Counts `n` jobs as submitted and returns the first of their `n` consecutive ids.
  JobId take_ids(std::size_t n);
  /// Refuses `job` with `refusal` on this thread, or queues it (refused there if the pool cannot
  /// take it). Returns its id.
  JobId submit_one(Job job, std::optional<JobResult> refusal);
  /// Delivers `outcomes` (deliver_outcome each), with no procpool lock held.
  void deliver_outcomes(std::vector<Outcome>& outcomes) noexcept;
  /// An in-place job on `input` and `output`; `refusal` gets the error if it cannot run (bad
  /// options or buffers).
  Job make_in_place_job(std::string_view name, LentBuffer input, LentBuffer output,
                        const SubmitOptions& options, OutcomeSink sink,
                        std::optional<JobResult>& refusal);
  /// Runs `job` as Pool::call does (refused with `refusal` if set).
  JobId call(Job job, std::optional<JobResult> refusal);
  Job make_job(JobId id, std::string_view name, Bytes payload, const SubmitOptions& options,
               OutcomeSink sink) const;
  /// Appends `jobs` to the queue in order (per QueueFullPolicy when it is full); the jobs it
  /// refuses (stopping, degraded, full) are counted and added to `rejected`, to be completed
  /// once no lock is held.
  void enqueue(std::span<Job> jobs, std::vector<Outcome>& rejected);

  /// Completes a job that never started with ErrorKind::cancelled, on this thread.
  void complete_cancelled(Job job);
  /// Pool::cancel of a job a worker holds (state_mutex_ held): one sent ahead and not yet read is
  /// taken back into `taken`; a started one is marked to end cancelled, per `mode`. False if no
  /// worker holds it, or it started and `mode` is if_queued.
  bool cancel_held(JobId id, CancelMode mode, std::optional<Job>& taken);

  // supervisor_loop.cpp: the loop, timers, sleeping and polling.
  void run() noexcept;
  void loop();
  std::optional<Clock::duration> step(Clock::time_point now);
  void on_ready_key(std::uint64_t key, Clock::time_point now);
  /// About to sleep: makes the next worker's memory cgroup now, off the path of its start.
  void make_cgroup_ahead() noexcept;
  /// Acts on every timer due (WorkerTimers) and on the pool's own; returns the earliest one left.
  std::optional<Clock::time_point> check_timers(Clock::time_point now);
  /// Acts on `worker`'s timers that are due at `now`.
  void on_timers(WorkerProcess& worker, Clock::time_point now);
  /// Takes back the jobs sent ahead of a job that has run longer than short jobs take
  /// (PrefetchPolicy::when_jobs_take_under); returns when to look again, if ever.
  std::optional<Clock::time_point> take_back_overdue(WorkerProcess& worker, Clock::time_point now);
  bool prepare_sleep(Clock::time_point now);
  /// Whether to poll (SpinPolicy) instead of sleeping now, given that the last iteration delivered
  /// `delivered` outcomes; collects the response rings to poll for data in spin_rings_ and the
  /// request rings to poll for space in spin_space_.
  bool prepare_spin(bool delivered);
  /// Polls spin_rings_, spin_space_ and the submit count for SpinPolicy::budget, at most `limit`.
  void spin(std::optional<Clock::duration> limit);
  /// Workers that want a CPU now: starting up (a process loading), or running a job that is not
  /// short (SpinPolicy::budget) or has run longer than a short one does.
  std::size_t cpus_in_use() const;
  /// Tells the workers whether a CPU is likely free for them to poll on (SegmentHeader::spin_hint)
  /// and which CPU this thread runs on (SegmentHeader::host_cpu).
  void update_spin_hint();
  void end_sleep();
  /// Fails the queued jobs whose SubmitOptions::deadline has passed (deadline_exceeded).
  void fail_expired(Clock::time_point now);
  void fail_queue(ErrorKind kind, const std::string& message);
  void emergency_stop() noexcept;

  // supervisor_dispatch.cpp: giving jobs to workers, taking back jobs sent ahead.
  /// Gives queued jobs to idle workers, then ahead to busy ones. True if a worker retired on
  /// being given its last job (its replacement is then due).
  bool dispatch(Clock::time_point now);
  /// Gives an idle worker `job` (one more attempt) to run from `now`; its request is sent next.
  void give_job(WorkerProcess& worker, std::unique_ptr<Job> job, Clock::time_point now);
  /// Makes `worker.job` the job it runs from `now`. `fresh_start`: dispatched to an idle worker
  /// (rather than reached after the job ahead of it).
  void begin_job(WorkerProcess& worker, Clock::time_point now, bool fresh_start);
  /// Sends queued jobs ahead to a busy worker per PrefetchPolicy, those that fit the memory
  /// budget beside `budget_in_use` (which grows by theirs); true if it took any.
  bool prefetch(WorkerProcess& worker, std::uint64_t& budget_in_use, Clock::time_point now);
  /// What the workers hold against the memory budget, as dispatch sees it.
  struct BudgetView {
    std::uint64_t in_use = 0;
    bool may_free = false;  // a worker runs a job or is leaving
  };
  /// The job at the head of the queue if it may run now (the memory budget admits it), removed
  /// from the queue if `take`; `peak` gets its expected peak. Heads that could never fit the
  /// budget are failed on the way; whether the head waits for memory is set in memory_budget_.
  std::unique_ptr<Job> take_job(const BudgetView& budget, bool take, std::uint64_t& peak);
  /// What the workers hold against the memory budget; `may_free` is set if a worker runs a job
  /// or is leaving.
  std::uint64_t memory_in_use(bool& may_free) const;
  /// Retires a worker (max_jobs) as soon as it holds its last job, so that its replacement starts
  /// while that job runs. True if it retired.
  bool retire_if_last_job_given(WorkerProcess& worker, Clock::time_point now);
  /// Gives back the jobs a leaving worker had not reached: to the front of the queue, or failed if
  /// the pool is stopping or degraded.
  void return_prefetched(WorkerProcess& worker);
  /// What take_back_unstarted found.
  enum class TakeBack {
    /// The worker has read every job sent to it; its current one is under way.
    nothing,
    /// Jobs it had not read went back to the queue.
    taken,
    /// It has read past its current job, which has so ended (its result not yet read here).
    worker_moved_on,
    /// It has not read its current job yet (it is passing over records taken back), so nothing
    /// behind that job could be taken back.
    not_reached,
  };
  /// How long a job's stop waits for its worker to reach it (TakeBack::not_reached), so that the
  /// kill cannot end a job it would read in the meantime; a worker that takes longer is stuck.
  static constexpr std::chrono::milliseconds reach_wait{100};
  /// Takes back the jobs sent ahead to `worker` that it has not read (job_claims.hpp), once it
  /// has read its current job (never that one: its outcome is its own). They go back to the head
  /// of the queue untouched, as return_unstarted does. Nothing while its current request is still
  /// streaming or a Pool::call thread holds it.
  TakeBack take_back_unstarted(WorkerProcess& worker);
  /// Takes back every job sent to `worker`, its current one included, if it has not read that
  /// one yet (a job just given to it): they go back to the head of the queue untouched and the
  /// worker is idle again. False if it has read it, or its jobs cannot be taken back now (as
  /// take_back_unstarted, and while it is leaving).
  bool take_back_unread(WorkerProcess& worker, Clock::time_point now);
  /// Whether `job` is the last job `worker` has read (job_claims.hpp): it runs it, or has just
  /// finished it. A hint for scheduling only; what is taken back is decided by take_back_unstarted.
  static bool worker_runs(WorkerProcess& worker, const Job& job);
  /// Jobs sent to worker `pid` that it never started: back to the head of the queue with their
  /// attempt counts as they were, or failed if the pool is stopping or degraded.
  void return_unstarted(std::deque<std::unique_ptr<Job>> jobs, int pid);
  // supervisor_channel.cpp: what a worker's link sent and read.
  /// Sends what the request of `worker`'s job still lacks (WorkerLink::send).
  void send_request(WorkerProcess& worker);
  /// Handles what arrived from `worker` (WorkerLink::read) until its ring is empty.
  void read_responses(WorkerProcess& worker, Clock::time_point now);
  void on_hello(WorkerProcess& worker, Clock::time_point now);
  void finish_job(WorkerProcess& worker, Arrival result, Clock::time_point now);
  /// Logs a bounded share of `worker`'s output (WorkerLink::read_output); `until_eof`: it has
  /// exited, so its output is read to the end (or to a bound) and closed.
  void read_output(WorkerProcess& worker, bool until_eof);

  // supervisor_lifecycle.cpp: workers coming and going.
  std::size_t target_workers() const;
  void spawn_workers(Clock::time_point now);
  /// Watches the workers the Spawner started and counts the starts that failed; false if any
  /// failed.
  bool take_started(Clock::time_point now, Spawner::Started started);
  /// Makes a started process a worker the supervisor watches. Throws std::system_error (the
  /// process is then killed and reaped).
  void watch_worker(std::unique_ptr<WorkerProcess> worker);
  /// Counts and reports a worker that could not be started, and backs off.
  void start_failed(Clock::time_point now, const std::string& why);

  void on_exit(WorkerProcess& worker, Clock::time_point now);
  /// Stops `worker` for `reason`, the one way a worker is told to go: a stop record or SIGTERM
  /// with SIGKILL after PoolOptions::kill_grace, or SIGKILL now (a protocol violation, a hard
  /// limit, a worker not yet ready). What it had not read goes back to the queue first.
  void stop_worker(WorkerProcess& worker, RecycleReason reason, Clock::time_point now,
                   std::string detail = {});
  /// Logs that `worker` broke the protocol (`what`) and stops it for that: killed, and nothing it
  /// writes is trusted from now on.
  void kill_for_violation(WorkerProcess& worker, const std::string& what);
  /// Records the change of the jobs whose memory awaited a reading, up to the latest one, in the
  /// job stats (WorkerMemory::attribute).
  void attribute_memory(WorkerProcess& worker);
  void apply_policy(WorkerProcess& worker, Clock::time_point now);
  void release_retired(WorkerProcess& worker, Clock::time_point now);
  /// While a job expected to add `peak` waits for the memory budget (the workers hold `in_use`):
  /// stops idle workers above min_workers, the largest first, until it would fit.
  void make_room(std::uint64_t peak, std::uint64_t in_use, Clock::time_point now);
  /// How long `job`, which has had `job.attempts` attempts, waits before the next one
  /// (SubmitOptions::retry_backoff, doubled per attempt, with jitter); zero for at once.
  Clock::duration retry_backoff(const Job& job);
  void note_unplanned_exit(Clock::time_point now, const std::string& why);
  void note_job_completed();
  void set_degraded(bool degraded, const std::string& why);
  void begin_final_stop(Clock::time_point now);

  /// Fails a job that reached a worker: reports a job_failed event, then completes it.
  void fail_job(const WorkerProcess& worker, std::unique_ptr<Job> job, JobError error,
                LogLevel level);
  /// An event about `worker`, with its id and pid filled in.
  static PoolEvent worker_event(EventType type, const WorkerProcess& worker, std::string message);

  // supervisor_call.cpp: Pool::call's direct hand-off.
  /// An idle worker this thread may give its job to itself, or nullptr (then the job is queued).
  /// `peak`: the job's expected peak, which the memory budget must admit at once.
  WorkerProcess* direct_call_worker(std::uint64_t peak);
  /// Ends this thread's wait on `worker` (`done`: its job has its outcome in outcomes_), delivers
  /// that outcome with the lock released, and wakes the supervisor thread if it has anything to
  /// do. Unlocks `lock`.
  void end_direct_call(std::unique_lock<std::mutex>& lock, WorkerProcess& worker, bool done);
  /// True if one of `worker`'s timers falls before the sleeping supervisor thread would wake.
  bool timer_before_wake(const WorkerProcess& worker) const;

  // Any thread.
  /// The answer to a use of the pool in a forked copy (forked_copy), naming both pids.
  std::string forked_copy_message() const;
  /// Why a job cannot be queued, if it cannot.
  std::optional<JobResult> check_request(std::string_view name, std::size_t payload_bytes,
                                         const SubmitOptions& options) const;
  /// Queues `job`'s outcome for delivery (its sink is moved out). Throws std::bad_alloc only
  /// without room reserved (reserve_outcomes).
  void queue_outcome(Job& job, JobResult result);
  /// Makes room for `jobs` more outcomes, so that completing them cannot fail for memory.
  void reserve_outcomes(std::size_t jobs);
  /// Sets the promise or calls the callback of `sink` now, on this thread (no lock held).
  void deliver_outcome(OutcomeSink sink, JobResult result) noexcept;

  const PoolOptions options_;
  /// The log sink, the event callback and the job counters (thread-safe on its own).
  Reporter reporter_;
  const int host_pid_;
  /// platform::fork_generation() in the host: another value means this is a forked copy.
  const std::uint64_t fork_generation_;

  // Submission side.
  /// Lent buffers (thread-safe on its own). Shared: a buffer given back after the pool is gone
  /// finds it expired and frees itself.
  std::shared_ptr<Lender> lender_ = std::make_shared<Lender>();
  /// The queue and what submitters share with the supervisor thread (thread-safe on its own).
  JobIntake intake_;
  /// Some worker streams jobs sent ahead: the supervisor sleeps at most backlog_poll_interval and
  /// that worker does not ring its doorbell for each result (see prepare_sleep()).
  bool backlog_polling_ = false;
  static constexpr std::chrono::microseconds backlog_poll_interval{50};

  // Memory beyond the sampled limits (docs/memory.md; supervisor thread).
  /// The host's memory cgroup, if it is in one procpool can read.
  const std::optional<platform::MemoryCgroup> host_cgroup_;
  /// Whether a worker's unexplained SIGKILL came from the OOM killer.
  OomAttribution oom_attribution_;
  /// Per-worker memory cgroups (PoolOptions::worker_cgroups), when asked for. Declared before the
  /// workers, which hold their cgroups: it outlives them.
  std::optional<WorkerCgroups> worker_cgroups_;
  /// The pool memory budget (PoolOptions::memory_budget), which queued jobs wait for.
  MemoryBudgetGate memory_budget_;

  // Supervisor state (changed by the supervisor thread under state_mutex_).
  mutable std::mutex state_mutex_;
  std::map<std::uint64_t, std::unique_ptr<WorkerProcess>> workers_;
  std::vector<Outcome> outcomes_;  // delivered after state_mutex_ is released
  /// When the sleeping supervisor thread wakes by itself (nullopt: only when woken). Meaningful
  /// while supervisor_sleeping_.
  std::optional<Clock::time_point> sleep_until_;
  std::size_t scaled_target_ = 0;  // workers wanted now, between min and max
  std::deque<std::optional<RecycleReason>> pending_replacements_;  // reasons for workers owed
  std::deque<Clock::time_point> unplanned_exits_;                  // the current run of failures
  Clock::time_point next_spawn_at_{};
  std::optional<Clock::time_point> drain_deadline_;
  bool final_stop_ = false;
  bool reported_above_soft_limit_ = false;
  std::uint64_t workers_started_ = 0, workers_exited_ = 0, start_failures_ = 0;
  std::array<std::uint64_t, recycle_reason_count> recycles_{};
  JobStatsTable job_stats_;
  std::minstd_rand retry_jitter_{std::random_device{}()};  // retry_backoff's jitter

  // Polling before sleeping (SpinPolicy; supervisor thread only).
  AdaptiveSpin spin_;
  const std::size_t online_cpus_;
  /// CPUs the constructing thread, and so the supervisor thread and the workers, may run on.
  const std::size_t usable_cpus_;
  std::uint32_t spin_hint_ = 0;  // a CPU is likely free (update_spin_hint); what the headers say
  // Whether `cpu` is the one this thread last ran on (SpinPolicy on; false if either is unknown).
  bool on_host_cpu(int cpu) const noexcept;
  // Whether `worker` last waited on the CPU this thread last ran on (as on_host_cpu).
  bool shares_cpu(WorkerProcess& worker) const noexcept;
  int host_cpu_ = -1;  // this thread's CPU at the last update_spin_hint; what the headers say
  std::atomic<int> submit_cpu_{-1};  // the CPU of the last submitting thread (a hint)
  Clock::time_point last_event_wait_{};
  static constexpr std::chrono::milliseconds event_wait_interval{1};
  std::vector<const RingReader*> spin_rings_;
  /// A request ring a payload streams into, and the space its next record needs.
  struct SpaceWatch {
    RingWriter* ring;
    std::uint64_t bytes;
  };
  std::vector<SpaceWatch> spin_space_;

  platform::Poller poller_;
  /// Starts workers (exec, or the fork server) and owns the worker ids and the fork servers.
  Spawner spawner_;
  std::mutex shutdown_mutex_;
  std::thread thread_;
  std::atomic<std::thread::id> supervisor_thread_id_{};
};

}  // namespace procpool::detail
