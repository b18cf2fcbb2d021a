// procpool-transcribe-server as a library: an HTTP front end (cpp-httplib) whose transcriptions
// run as azure.transcribe jobs in a procpool::Pool of recycled worker processes.
#pragma once

#include <procpool/job_registry.hpp>
#include <procpool/options.hpp>
#include <procpool/stats.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace procpool::azure {

/// Everything the server can be told, from flags (--name value or --name=value) or from the
/// environment (PROCPOOL_TRANSCRIBE_NAME, e.g. PROCPOOL_TRANSCRIBE_MEMORY_SOFT_LIMIT_MB). Flags
/// win. The defaults suit a speech SDK that leaks native memory per request.
struct ServerOptions {
  std::string host = "127.0.0.1";   // --host
  int port = 8080;                  // --port (0: the OS chooses; the chosen port is printed)
  std::size_t workers = 2;          // --workers
  std::size_t http_threads = 16;    // --http-threads: connections served at once
  std::size_t queue_capacity = 64;  // --queue-capacity: jobs waiting for a worker; then 503
  std::size_t max_body_bytes = std::size_t{256} << 20;  // --max-body-mb
  std::chrono::milliseconds job_timeout{330'000};       // --job-timeout-s
  unsigned attempts = 2;       // --attempts: a job whose worker crashed/was killed is run again
  std::uint64_t max_jobs = 0;  // --max-jobs (0: off)
  std::uint64_t memory_soft_limit = std::uint64_t{1024} << 20;  // --memory-soft-limit-mb
  std::uint64_t memory_hard_limit = std::uint64_t{4096} << 20;  // --memory-hard-limit-mb (0: off)
  std::uint64_t memory_growth_limit = 0;                        // --memory-growth-limit-mb (0: off)
  std::chrono::milliseconds idle_timeout{300'000};              // --idle-recycle-s (0: off)
  std::chrono::milliseconds max_lifetime{0};                    // --max-lifetime-s (0: off)
  MemoryMetric memory_metric = MemoryMetric::rss;               // --memory-metric rss|pss|uss
  /// --worker-memory-cgroups: each worker in a memory cgroup of its own that the kernel caps at
  /// --worker-memory-cap-mb (0: the hard limit), made under --worker-cgroup-parent (empty: the
  /// server's own cgroup). Where that cannot be done the server logs why and runs on the sampled
  /// limits.
  bool worker_cgroups = true;
  std::uint64_t worker_memory_cap = 0;  // --worker-memory-cap-mb (0: memory_hard_limit)
  std::string worker_cgroup_parent;     // --worker-cgroup-parent
  /// The pool memory budget: --memory-budget-mb, else --memory-budget-fraction of the server's
  /// memory cgroup limit (a container's) when it has one.
  std::uint64_t memory_budget = 0;          // --memory-budget-mb (0: the fraction)
  double memory_budget_fraction = 0.7;      // --memory-budget-fraction (0: no budget)
  std::chrono::milliseconds drain{30'000};  // --drain-s: shutdown grace
  std::size_t simulate_leak_mb = 0;         // --simulate-native-leak-mb
  /// The worker executable (self-exec: a binary whose main() calls run_worker_if_requested with
  /// make_worker_registry()). Empty: this process's own binary. Tests point it at the server.
  std::string worker_executable;  // --worker-executable
  bool quiet = false;             // --quiet: no per-request log lines
  /// Where log lines go (never containing the key). Empty: stderr.
  std::function<void(std::string_view)> log;
};

/// Parses `args` (without argv[0]) over the environment `env`. Throws std::invalid_argument
/// naming the flag or variable on a bad value; "--help" throws HelpRequested.
ServerOptions parse_server_options(const std::vector<std::string>& args,
                                   const std::map<std::string, std::string>& env);
struct HelpRequested {};
/// The usage text for --help.
std::string server_usage();

/// The pool options the server derives from `options`.
PoolOptions make_pool_options(const ServerOptions& options);

/// The worker's jobs: azure.transcribe, leaking `simulate_leak_mb` MiB of touched pages per job.
JobRegistry make_worker_registry(std::size_t simulate_leak_mb);
/// The --simulate-native-leak-mb value in a worker's argv (the host passes it through
/// PoolOptions::worker_command); 0 if absent.
std::size_t simulate_leak_from_argv(int argc, char** argv);

/// The HTTP service. The constructor starts the pool and binds the socket (throws
/// std::runtime_error if it cannot); serving starts with run() or start().
class TranscribeServer {
 public:
  explicit TranscribeServer(ServerOptions options);
  /// shutdown().
  ~TranscribeServer();
  TranscribeServer(const TranscribeServer&) = delete;
  TranscribeServer& operator=(const TranscribeServer&) = delete;

  /// The bound port.
  int port() const noexcept;
  /// Serves on the calling thread until stop(); returns after in-flight requests are answered.
  void run();
  /// run() on a background thread.
  void start();
  /// Stops accepting connections; in-flight requests still complete. Thread-safe, idempotent,
  /// and effective even if called just before run() begins.
  void stop();
  /// stop(), waits for the HTTP side to finish, then drains the pool (ServerOptions::drain) and
  /// reaps its workers. Idempotent.
  void shutdown();

  PoolStats stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace procpool::azure
