// Helpers shared by the tests: bytes, waiting on conditions with deadlines, process inspection.
#pragma once

#include <sched.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <mutex>
#include <procpool/options.hpp>
#include <procpool/pool.hpp>
#include <procpool/result.hpp>
#include <string>
#include <string_view>
#include <vector>
#include "process_maps.hpp"

namespace procpool::test {

Bytes bytes(std::string_view text);
std::string text(const Bytes& bytes);
template <class T>
Bytes encode_value(const T& value) {
  Bytes out(sizeof(T));
  std::memcpy(out.data(), &value, sizeof(T));
  return out;
}

/// Polls `condition` until it holds or `timeout` passes; returns whether it held. For conditions
/// the test cannot be told about (a process disappearing); never a substitute for a future.
bool eventually(const std::function<bool()>& condition,
                std::chrono::milliseconds timeout = std::chrono::seconds(10));

/// Waits (up to 10 s) until the pool has exactly `workers` workers, all idle: none starting,
/// retiring or stopping. False if it never did.
bool settled(Pool& pool, std::size_t workers);

/// Pool options for tests: quiet log, small ring so large payloads really stream.
PoolOptions quiet_options(std::size_t workers = 2);

/// Collects what a pool logs (PoolOptions::log = lines.sink()), for tests that read it.
class LogLines {
 public:
  LogSink sink();
  /// Lines containing `part`.
  std::size_t count(std::string_view part);
  bool contains(std::string_view part) { return count(part) > 0; }
  /// The lines so far.
  std::vector<std::string> lines();

 private:
  std::mutex mutex_;
  std::vector<std::string> lines_;
};

/// The test worker executable (a separate binary calling procpool::worker_main).
std::string test_worker_path();

/// Children of this process, and those of them that are zombies.
std::vector<int> child_pids(int parent);
std::vector<int> zombie_children(int parent);
/// Children of `parent` that are fork servers (StartMode::fork_server), zombies included.
std::vector<int> fork_servers(int parent);
bool process_alive(int pid);
/// Stopped by a signal (SIGSTOP): state T in /proc/<pid>/stat.
bool process_stopped(int pid);

/// /dev/shm entries created by procpool for host `pid`.
std::vector<std::string> shm_entries_for(int pid);

/// A FIFO that holds the test job "wait_fifo" running until release(): jobs that stay busy for
/// exactly as long as a test needs, without sleeps.
class Gate {
 public:
  Gate();
  ~Gate();
  Gate(const Gate&) = delete;
  Gate& operator=(const Gate&) = delete;
  /// The payload for a "wait_fifo" job held by this gate.
  Bytes payload() const;
  /// The FIFO's path (for jobs that take it as part of their payload).
  const std::string& path() const { return path_; }
  /// Lets the held job finish; blocks until that job has opened the FIFO (it must be running).
  void release();

 private:
  std::string path_;
};

/// A file the test jobs "until_stop_requested" and "mark_then_hang" create once they run (their
/// payload names it), so that a test knows the job started; removed with the object.
class StartMark {
 public:
  StartMark();
  ~StartMark();
  StartMark(const StartMark&) = delete;
  StartMark& operator=(const StartMark&) = delete;
  Bytes payload() const;
  bool seen() const;

 private:
  std::string path_;
};

/// The test registry's "echo", typed as strings.
struct EchoText {
  static constexpr std::string_view name = "echo";
  using Request = std::string;
  using Response = std::string;
};

/// Pins the calling thread to the first CPU it may run on, for this object's lifetime; threads
/// and processes it starts meanwhile inherit that CPU. Throws std::system_error if refused.
class PinnedToOneCpu {
 public:
  PinnedToOneCpu();
  ~PinnedToOneCpu();
  PinnedToOneCpu(const PinnedToOneCpu&) = delete;
  PinnedToOneCpu& operator=(const PinnedToOneCpu&) = delete;

 private:
  cpu_set_t before_{};
};

std::size_t open_fd_count();
std::uint64_t self_rss_bytes();

/// Context switches (voluntary and involuntary) so far of every thread of process `pid` but thread
/// `except_thread` (0: none), from /proc/<pid>/task/*/status.
std::uint64_t context_switches(int pid, int except_thread = 0);

}  // namespace procpool::test
