// The platform seam: every operating-system call procpool makes goes through this header. The rest
// of src/ includes no OS header. A port to another OS is a new folder beside linux/.
//
// Error policy: functions that can fail for reasons the caller must handle throw std::system_error
// with the call's name in the message; "query" functions that may legitimately find nothing return
// std::optional. System calls are retried on EINTR here so callers never see it (Poller::wait
// returns early instead, and its caller loops).
//
// Descriptors: every descriptor made here for the host to keep or to pass on (eventfds, epoll,
// pipes, sockets, memfds, pidfds, /dev/null, statm and cgroup.procs files) is close-on-exec and
// above 2, even in a host that closed its stdio: there the host's own writes to stderr would land
// in it.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace procpool::platform {

/// Owns a file descriptor; closes it on destruction. Move-only.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) noexcept : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept;
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const noexcept { return fd_; }
  explicit operator bool() const noexcept { return fd_ >= 0; }
  int release() noexcept {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset() noexcept;

 private:
  int fd_ = -1;
};

// ---- Wake-ups ------------------------------------------------------------------------------

/// A non-blocking, close-on-exec eventfd.
UniqueFd make_eventfd();
/// Adds one to the eventfd's counter (wakes a poller). Never fails on a valid eventfd.
void eventfd_notify(int fd) noexcept;
/// Resets the eventfd's counter to zero.
void eventfd_drain(int fd) noexcept;

/// Who may wait on and wake a futex word.
enum class FutexScope {
  /// The word is in memory shared with other processes (a segment).
  shared,
  /// The word is in this process's own memory: the kernel finds its waiters by address alone
  /// (FUTEX_PRIVATE_FLAG), a little cheaper.
  process_private,
};

/// Sleeps while `word` holds `expected`, until woken or `timeout` passes. Returns at once if the
/// value differs. Spurious returns are possible; callers re-check.
void futex_wait(const std::atomic<std::uint32_t>& word, std::uint32_t expected,
                std::optional<std::chrono::nanoseconds> timeout = std::nullopt,
                FutexScope scope = FutexScope::shared) noexcept;
/// Wakes every thread or process sleeping on `word`.
void futex_wake_all(std::atomic<std::uint32_t>& word,
                    FutexScope scope = FutexScope::shared) noexcept;

/// Waits on many descriptors at once (epoll). Each descriptor is registered with a 64-bit key that
/// comes back when it is ready. Not thread-safe.
class Poller {
 public:
  Poller();
  /// Watches `fd` for readability (and hang-up). `edge_triggered`: report each new signal once
  /// rather than for as long as `fd` stays readable; every write to an eventfd is such a signal, so
  /// an eventfd watched this way never needs draining (a read per wake-up saved). Throws
  /// std::system_error.
  void add(int fd, std::uint64_t key, bool edge_triggered = false);
  /// Stops watching `fd`. Never throws.
  void remove(int fd) noexcept;
  /// Waits until at least one descriptor is ready or `timeout` passes (nullopt = forever) and
  /// appends the keys of the ready descriptors to `ready`.
  /// Sub-millisecond timeouts are honoured where the kernel has epoll_pwait2 (Linux 5.11), else
  /// rounded up to 1 ms.
  void wait(std::optional<std::chrono::nanoseconds> timeout, std::vector<std::uint64_t>& ready);

 private:
  UniqueFd epoll_;
};

// ---- Pipes ---------------------------------------------------------------------------------

struct Pipe {
  UniqueFd read_end;   ///< non-blocking, close-on-exec
  UniqueFd write_end;  ///< close-on-exec
};
Pipe make_pipe();

/// Reads up to `size` bytes. Returns the count, 0 at end of file, nullopt if nothing is available
/// now (EAGAIN) or on error (treated as end by callers that also see 0 later).
std::optional<std::size_t> read_some(int fd, void* buffer, std::size_t size) noexcept;

// ---- Passing descriptors -------------------------------------------------------------------

/// A connected pair of Unix sockets (SOCK_SEQPACKET, close-on-exec) that carries descriptors from
/// the host to one worker. The host's end is non-blocking.
struct DescriptorChannel {
  UniqueFd host_end;
  UniqueFd worker_end;
};
DescriptorChannel make_descriptor_channel();

/// Sends `fds` in one message (SCM_RIGHTS) without blocking. False if it could not be sent now
/// (the peer is gone, or its queue is full because it does not read).
bool send_descriptors(int socket, const int* fds, std::size_t count) noexcept;

/// Worker side: waits for one message and returns the descriptors it carries (close-on-exec);
/// empty if the channel is closed or the message carries none. Extra descriptors beyond `max` are
/// closed.
std::vector<UniqueFd> receive_descriptors(int socket, std::size_t max);

/// A second descriptor for the file `fd` is open on, opened read-only (through /proc/self/fd): a
/// process that receives it can map the file but not write to it. Throws std::system_error.
UniqueFd reopen_read_only(int fd);

// ---- Processes -----------------------------------------------------------------------------

struct SpawnRequest {
  /// Absolute or relative path of the program, and argv[1..].
  std::string executable;
  std::vector<std::string> arguments;
  /// Becomes the child's stdout and stderr; -1: /dev/null.
  int output_fd = -1;
  /// Becomes the child's descriptor 3 (the wake-up doorbell).
  int doorbell_fd = -1;
  /// Becomes the child's descriptor 4 (the shared-memory segment); -1: none.
  int segment_fd = -1;
  /// Becomes the child's descriptor 5 (the worker's end of its DescriptorChannel); -1: none (then
  /// segment_fd must be given too, as descriptors 3.. are placed contiguously). Nothing else is
  /// inherited.
  int channel_fd = -1;
  /// The child's whole environment, one "NAME=value" each. nullopt: the host's own, as it is now.
  std::optional<std::vector<std::string>> environment{};
  /// Applied in the child between fork and exec, in this order; a failure fails the spawn.
  /// An open cgroup.procs (platform::open_cgroup_procs) the child moves itself into first, so
  /// that all its memory is charged there; -1: it stays in the host's cgroups.
  int cgroup_procs_fd = -1;
  /// Its /proc/self/oom_score_adj; nullopt = inherited.
  std::optional<int> oom_score_adj{};
  /// RLIMIT_NOFILE (soft and hard); nullopt = inherited.
  std::optional<std::uint64_t> max_open_files{};
  /// RLIMIT_CORE (soft and hard); nullopt = inherited.
  std::optional<std::uint64_t> core_dump_limit{};
  /// Supplementary groups cleared, then real/effective/saved gid, then uid; nullopt = unchanged.
  struct Credentials {
    std::uint32_t uid = 0;
    std::uint32_t gid = 0;
  };
  std::optional<Credentials> credentials{};
  /// PR_SET_NO_NEW_PRIVS.
  bool no_new_privileges = false;
};

struct SpawnedProcess {
  int pid = 0;
  /// A pidfd: readable when the process exits. Keeps the pid from being reused until reaped.
  UniqueFd pidfd;
};

/// The descriptor numbers a worker finds its doorbell and its segment on.
inline constexpr int worker_doorbell_fd = 3;
inline constexpr int worker_segment_fd = 4;
inline constexpr int worker_channel_fd = 5;

/// Starts `request.executable` with vfork+exec (never a plain fork of the host), stdin from
/// /dev/null, and only descriptors 0-3 open, plus 4 and 5 when a segment and a channel are given.
/// The request's descriptors may sit on any number, 0-5 included.
/// Throws std::system_error if the program cannot be started (the message names it, and the call
/// that failed if it was one of the restrictions).
SpawnedProcess spawn(const SpawnRequest& request);

/// Watches `pid`, a child of this process not yet reaped, through a new pidfd. Throws
/// std::system_error (after killing and reaping the child) if it cannot.
SpawnedProcess watch_child(int pid);

/// How a process ended.
struct ExitStatus {
  std::optional<int> exit_code;
  std::optional<int> signal;
};

/// Reaps `pid` if it has exited; nullopt if it is still running. If the host made children
/// self-reaping (SIGCHLD ignored) the status is unknown and both fields are empty.
std::optional<ExitStatus> try_reap(int pid) noexcept;

/// Waits for `pid` to exit and reaps it. Only for a process already sent SIGKILL.
void reap_blocking(int pid) noexcept;

/// Sends SIGTERM / SIGKILL through the pidfd (safe against pid reuse). Never throws.
void terminate_process(int pidfd) noexcept;
void kill_process(int pidfd) noexcept;

/// Whether `signal` is SIGKILL.
bool is_sigkill(int signal) noexcept;

/// "SIGSEGV"-style name of a signal number.
std::string signal_name(int signal);

/// The inode of this process's pid namespace (/proc/self/ns/pid): two processes see each other's
/// pids alike only within one namespace. nullopt if unknown.
std::optional<std::uint64_t> pid_namespace() noexcept;

/// True if a process with this pid exists (it may be a zombie).
bool process_exists(int pid) noexcept;
/// getpid(): a system call in glibc since 2.25 (no cached pid), so not for every job.
int current_pid() noexcept;

/// Registers, once per process (thread-safe), a pthread_atfork handler that counts one more fork in
/// the child of every fork() from then on, and returns fork_generation(). A child made without
/// fork() (_Fork, vfork, clone, the raw system call) runs no handler and is not counted. Throws
/// std::system_error if the handler cannot be registered.
std::uint64_t watch_forks();
/// How many fork()s lie between this process and the one that first called watch_forks(): 0
/// there (and anywhere before the first call), 1 in its child, 2 in a grandchild. One load, no
/// system call.
std::uint64_t fork_generation() noexcept;

/// Threads of the calling process now (the entries of /proc/self/task), or nullopt if unknown.
std::optional<std::size_t> thread_count() noexcept;

/// Makes this process the leader of a new process group (setpgid(0, 0)). False if refused.
bool leave_process_group() noexcept;

/// Worker side: asks the kernel to SIGKILL this process when its parent dies, then checks the
/// parent is still `expected_parent` (it may have died before the request). False if it is not.
bool die_with_parent(int expected_parent) noexcept;

/// Worker side: whether this process's parent is still `expected_parent` (getppid()). Once that
/// parent has died this process has another (a subreaper, or init), which cannot have the dead
/// parent's pid, so the answer stays false. A second way to notice the parent's death, for when the
/// parent-death signal is gone: the kernel clears it when the process changes its credentials. One
/// system call; never fails.
bool parent_is(int expected_parent) noexcept;

/// Worker side: a pidfd (close-on-exec) of this process's parent, which must be `expected_parent`:
/// opened with pidfd_open, then checked to be the parent still (getppid()), so that a pid reused
/// after the parent's death cannot be watched by mistake. An empty UniqueFd with errno set if it
/// cannot be opened; ESRCH if the parent is gone or is no longer `expected_parent`.
UniqueFd open_parent_pidfd(int expected_parent) noexcept;

/// Worker side: makes this process the leader of a process group of its own (so everything a job
/// starts is in it) and starts a guard: a tiny process in that group, not this one's child, that
/// SIGKILLs the whole group once this process has died, whatever killed it (a crash, a timeout, or
/// the parent-death signal after the host was SIGKILLed), or once the host has died, if
/// `host_pidfd` is a pidfd of the host (open_parent_pidfd; -1: the guard watches this process
/// only). Watching the host covers what the parent-death signal cannot: the kernel clears that
/// signal when a job changes this process's credentials, and then a worker, and a job it still
/// runs, would outlive a SIGKILLed host. The guard sleeps in poll() on the two pidfds: no CPU
/// while nothing happens. Without it a job's own children would outlive their worker. Children
/// that leave the group (setsid, setpgid) are not covered.
///
/// The guard and its short-lived parent share this process's memory (CLONE_VM: no page tables
/// copied, so starting both costs about as much as starting two threads) except in sanitizer
/// builds, where they are forks. (On kernels before 5.16 a worker dumping core also killed the
/// processes sharing its memory, so its guard; procpool needs 5.3 for pidfds.)
///
/// Two steps: start_process_group_guard() opens this process's pidfd for the guard, starts the
/// guard's parent (which starts the guard with its own copies of both pidfds, and exits) without
/// waiting for it, and returns its pid, or -1 with errno set and `failed` naming the call. The
/// caller may close `host_pidfd` once it returns. The parent's pid is stored in
/// `report_starter` and the guard's in `report_guard` (either may be null; shared memory, so that
/// the host learns them: both are orphans, the host's children if it is a child subreaper);
/// finish_process_group_guard() reaps that parent, which confirms the guard runs, and must be
/// called before any job runs. It returns nullptr on success, otherwise the failed call with errno
/// set (the worker then runs unguarded).
int start_process_group_guard(const char*& failed, int host_pidfd,
                              std::atomic<std::int32_t>* report_starter,
                              std::atomic<std::int32_t>* report_guard) noexcept;

/// Host side, for a worker that has exited (its pidfd is readable) and is not reaped yet: reaps it
/// as try_reap() does. In a host that adopts orphans (a child subreaper, or pid 1) the worker's
/// guard and the guard's parent, orphans from the start, are this process's children too and
/// nobody else reaps them: the worker's process group is killed first (its id is still the
/// unreaped worker's, so nothing outside it is hit; the guard would kill it anyway), then each of
/// `guard_pids` that is a child of this process in that group is reaped, waiting up to `timeout`
/// for each to exit. Other entries (0, the worker's own pid, anything else) are skipped: they come
/// from memory the worker could write. Processes a job started that end up this process's children
/// are not looked for.
std::optional<ExitStatus> reap_worker(int pid, int pidfd, const std::int32_t (&guard_pids)[2],
                                      std::chrono::milliseconds timeout) noexcept;
const char* finish_process_group_guard(int starter) noexcept;

/// Marks a descriptor close-on-exec so the worker's own children do not inherit it.
void set_cloexec(int fd) noexcept;

// ---- The fork server (StartMode::fork_server) ------------------------------------------------

/// Fork-server side, once, while the process runs one thread: learns what fork_sibling() needs
/// to leave glibc's per-thread state in the child as fork() would: where glibc caches the thread's
/// id (the address glibc gave set_tid_address, read back with prctl(PR_GET_TID_ADDRESS), and
/// checked to hold gettid()), and the head of the thread's robust-mutex list (get_robust_list).
/// Returns nullptr, or why it cannot (a kernel built without CONFIG_CHECKPOINT_RESTORE has no
/// PR_GET_TID_ADDRESS): then fork_sibling() must not be called, as its children would record the
/// server's thread id as the owner of every mutex they lock.
const char* prepare_fork_sibling() noexcept;

/// Fork-server side: forks this process, which must be single-threaded and have called
/// prepare_fork_sibling() successfully, into a sibling: the child's parent is this process's parent
/// (CLONE_PARENT), so the host that started the fork server is the worker's parent, gets its
/// SIGCHLD, reaps it and reads its exit status as with a spawned worker. The child starts as from
/// glibc's _Fork: glibc's cached thread id is the child's own (CLONE_CHILD_SETTID, and
/// CLONE_CHILD_CLEARTID as fork() asks), its robust-mutex list is registered with the kernel again
/// (a clone drops it), signals are blocked across the clone, and no pthread_atfork handler runs.
/// `report_pid`, if not null, is where the kernel writes the child's pid in this process's memory
/// before either process goes on (CLONE_PARENT_SETTID). Returns the child's pid in the parent, 0
/// in the child, -1 with errno set.
int fork_sibling(std::int32_t* report_pid) noexcept;

/// In a worker just forked by the fork server: puts `output` on descriptors 1 and 2 and the
/// doorbell, segment and channel on worker_doorbell_fd, worker_segment_fd and worker_channel_fd,
/// where a spawned worker finds them, and closes every descriptor above those. Only system calls.
/// False with errno set.
bool place_forked_worker_descriptors(int output, int doorbell, int segment, int channel) noexcept;

/// Ends this side's sending on a socket (shutdown(SHUT_WR)): the peer reads end-of-file once it
/// has read what was sent before; this side can still receive.
void shutdown_sending(int socket) noexcept;

/// Waits up to `timeout` for the process behind `pidfd` to exit (it is not reaped); true if it
/// has.
bool wait_for_exit(int pidfd, std::chrono::milliseconds timeout) noexcept;

/// Sends one 32-bit value as one message on a DescriptorChannel without blocking; false if it
/// could not be sent (the peer is gone).
bool send_value(int socket, std::int32_t value) noexcept;
/// What try_receive_value found.
enum class Received {
  value,        ///< a message holding a 32-bit value, now in `value`
  nothing_yet,  ///< no message waiting
  closed,       ///< end of file, an error, or a message of another size
};
/// Reads one message holding a 32-bit value from a non-blocking socket, without waiting.
Received try_receive_value(int socket, std::int32_t& value) noexcept;

// ---- Files ---------------------------------------------------------------------------------

/// The running executable's path, resolved now from /proc/self/exe (or "/proc/self/exe" itself if
/// the file is gone).
std::string self_executable_path();
/// Empty if `path` names an executable regular file; otherwise why it does not.
std::string check_executable(const std::string& path);

// ---- Memory --------------------------------------------------------------------------------

/// Reads one process's resident set size (from /proc/<pid>/statm) again and again with a single
/// pread each time: the file stays open, so a reading costs one system call, not three.
class RssReader {
 public:
  RssReader() = default;
  /// Opens /proc/<pid>/statm. Throws std::system_error if it cannot (out of descriptors, say): a
  /// worker whose memory cannot be read would have its memory limits silently off.
  explicit RssReader(int pid);
  /// nullopt if the process is gone (or the reader is empty).
  std::optional<std::uint64_t> read() const noexcept;

 private:
  UniqueFd statm_;
};

/// Proportional and unique set sizes of `pid` from /proc/<pid>/smaps_rollup (costlier than
/// statm: the kernel walks the page tables); nullopt if it is gone or the file is missing.
struct SharedMemoryUsage {
  std::uint64_t pss = 0;
  std::uint64_t uss = 0;  ///< Private_Clean + Private_Dirty
};
std::optional<SharedMemoryUsage> read_pss_uss(int pid) noexcept;

/// Worker side: caps this process's address space (RLIMIT_AS). False if the kernel refused.
bool limit_address_space(std::uint64_t bytes) noexcept;

/// Worker side: PR_SET_DUMPABLE. false: no core dump, and processes of the same user without
/// CAP_SYS_PTRACE can no longer ptrace it or read its /proc/<pid>/mem; true: as any process again
/// (a worker forked from the fork server, which is not dumpable). False if refused.
bool set_dumpable(bool dumpable) noexcept;

// ---- Scheduling ----------------------------------------------------------------------------

/// CPUs online on this machine, at least 1.
std::size_t online_cpus() noexcept;

/// CPUs the calling thread may run on (its affinity mask), at least 1. Threads and processes it
/// starts inherit that mask.
std::size_t usable_cpus() noexcept;

/// Lets another runnable thread on this CPU run first (sched_yield); returns at once if none.
void yield_cpu() noexcept;

/// How often the calling thread has been switched out while it could still run (preempted, or a
/// yield that ran another thread), from getrusage(RUSAGE_THREAD); nullopt if unknown. Sleeps do
/// not count. Time the hypervisor takes from a virtual CPU does not count either: it is no switch
/// in this kernel.
std::optional<std::uint64_t> involuntary_switches() noexcept;

/// The CPU the calling thread runs on now (sched_getcpu, no system call where the vDSO has it), or
/// -1 if unknown. A hint: the thread may move at any time.
int current_cpu() noexcept;

// ---- Identity and limits -------------------------------------------------------------------

/// This process's effective user id.
std::uint32_t effective_uid() noexcept;

/// This process's oom_score_adj (/proc/self/oom_score_adj), or nullopt if it cannot be read.
std::optional<int> oom_score_adj() noexcept;

/// Whether this process may lower an oom_score_adj below its own (CAP_SYS_RESOURCE in its
/// effective set). False if unknown.
bool may_lower_oom_score() noexcept;

/// Resource limits procpool can set on a worker.
enum class Resource { open_files, core_dump };
/// This process's hard limit for `resource`; UINT64_MAX for unlimited.
std::uint64_t hard_limit(Resource resource) noexcept;

/// `bytes` of private anonymous memory straight from the kernel (mmap), zero-filled, and back to it
/// (munmap): for large blocks that must not stay in the allocator's heap once freed. Throws
/// std::bad_alloc.
void* map_anonymous(std::size_t bytes);
void unmap_anonymous(void* address, std::size_t bytes) noexcept;

/// Leaves the pages of [address, address + bytes) (a whole mapping, page-aligned) out of every
/// process forked from this one from now on (MADV_DONTFORK): the child has no such mapping. False
/// if refused.
bool keep_from_forks(void* address, std::size_t bytes) noexcept;

/// The mmap flag that faults every page of a mapping in at once (MAP_POPULATE), for mapping APIs
/// that take raw flags.
int map_populate_option() noexcept;

/// What the pages of a mapping allow this process to do.
enum class MemoryAccess { none, read, read_write };
/// Changes what the pages of [address, address + bytes) allow (mprotect). The pages stay mapped.
/// `address` must be page-aligned. False with errno
/// set if refused: read_write on a mapping of a read-only descriptor, say, or no memory to split
/// a mapping (a range that covers only part of one).
bool protect_memory(void* address, std::size_t bytes, MemoryAccess access) noexcept;

/// What fstat says of the file `fd` is open on: its size, and what identifies it (two descriptors
/// of one file give the same device and inode). nullopt if fstat fails.
struct FileInfo {
  std::uint64_t size = 0;
  std::uint64_t device = 0;
  std::uint64_t inode = 0;
};
std::optional<FileInfo> file_info(int fd) noexcept;

/// A new anonymous shared-memory object (memfd) of `size` bytes, mode 0600, close-on-exec. It has
/// no name in any file system, so nothing can be left behind, whatever happens to the process: it
/// lives as long as a descriptor or a mapping of it does, and is reached only through those (or
/// /proc/<pid>/fd, which takes the right to ptrace the holder). Its pages are allocated on first
/// write, from memory rather than from /dev/shm's size limit. Its size is sealed (and the seals
/// too): whoever gets a descriptor of it cannot shrink it under the host's mapping, which would
/// make the host's next access to the lost pages a SIGBUS. `name` is what /proc/<pid>/maps shows
/// (as /memfd:<name>). Throws std::system_error.
UniqueFd make_shared_memory(std::uint64_t size, const char* name);

/// The host's whole environment, one "NAME=value" each, as it is now.
std::vector<std::string> host_environment();

}  // namespace procpool::platform
