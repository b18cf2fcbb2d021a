#include "options_validation.hpp"

#include <thread>

#include "platform/platform.hpp"
#include "procpool/error.hpp"

namespace procpool::detail {

namespace {

constexpr std::size_t max_workers = 1024;
constexpr std::size_t min_ring_bytes = std::size_t{64} << 10;
constexpr std::size_t max_ring_bytes = std::size_t{1} << 30;
constexpr std::size_t max_message_bytes = std::size_t{4} << 30;
constexpr std::uint64_t min_open_files = 16;

std::string bytes_range(std::size_t low, std::size_t high) {
  return std::to_string(low) + ".." + std::to_string(high) + " bytes";
}

void validate_environment(const WorkerEnvironment& environment) {
  auto bad_text = [](const std::string& text) { return text.find('\0') != std::string::npos; };
  auto bad_name = [&](const std::string& name) {
    return name.empty() || name.find('=') != std::string::npos || bad_text(name);
  };
  for (const std::string& name : environment.allow) {
    if (bad_name(name)) {
      throw ConfigError("WorkerEnvironment::allow",
                        "'" + name +
                            "' is not a variable name: names are non-empty, without '=' or NUL "
                            "(a trailing '*' matches a prefix)");
    }
  }
  for (std::size_t i = 0; i < environment.set.size(); ++i) {
    const auto& [name, value] = environment.set[i];
    if (bad_name(name)) {
      throw ConfigError("WorkerEnvironment::set", "'" + name +
                                                      "' is not a variable name: names are "
                                                      "non-empty, without '=' or NUL");
    }
    if (bad_text(value)) {
      throw ConfigError("WorkerEnvironment::set",
                        "the value of " + name + " contains a NUL character");
    }
    for (std::size_t j = 0; j < i; ++j) {
      if (environment.set[j].first == name) {
        throw ConfigError("WorkerEnvironment::set",
                          name + " is set twice; give each variable once");
      }
    }
  }
}

void validate_limit(const char* field, std::uint64_t value, platform::Resource resource,
                    bool root) {
  std::uint64_t hard = platform::hard_limit(resource);
  if (!root && value > hard) {
    throw ConfigError(field, std::to_string(value) + " is above this process's hard limit (" +
                                 std::to_string(hard) +
                                 "), which only root can raise; lower it, or raise the host's "
                                 "hard limit (ulimit -H) before it starts");
  }
}

void validate_security(const WorkerSecurity& security, MemoryMetric memory_metric) {
  validate_environment(security.environment);
  const std::uint32_t host_uid = platform::effective_uid();
  const bool root = host_uid == 0;
  if (security.max_open_files != 0) {
    if (security.max_open_files < min_open_files) {
      throw ConfigError("WorkerSecurity::max_open_files",
                        std::to_string(security.max_open_files) +
                            " is too few for a worker to start (it needs descriptors 0-3, one for "
                            "its shared memory and some to load its libraries); allowed: 0 "
                            "(inherit) or at least " +
                            std::to_string(min_open_files));
    }
    validate_limit("WorkerSecurity::max_open_files", security.max_open_files,
                   platform::Resource::open_files, root);
  }
  if (security.core_dump_limit) {
    validate_limit("WorkerSecurity::core_dump_limit", *security.core_dump_limit,
                   platform::Resource::core_dump, root);
  }
  if (!security.dumpable && !root && memory_metric != MemoryMetric::rss) {
    throw ConfigError("WorkerSecurity::dumpable",
                      "false stops a host that is not root from reading a worker's "
                      "/proc/<pid>/smaps_rollup, which RecyclePolicy::memory_metric pss and uss "
                      "need (their limits would never fire); use MemoryMetric::rss, or keep "
                      "dumpable");
  }
  if (security.run_as && !root) {
    throw ConfigError("WorkerSecurity::run_as",
                      "this process runs as uid " + std::to_string(host_uid) +
                          ", and only a host running as root can start workers as another "
                          "user; leave run_as empty (workers then run as uid " +
                          std::to_string(host_uid) + "), or start the host as root");
  }
}

void validate_oom_score_adj(int value) {
  constexpr int lowest = -1000, highest = 1000;
  if (value < lowest || value > highest) {
    throw ConfigError("PoolOptions::worker_oom_score_adj",
                      std::to_string(value) +
                          " is out of range; allowed: -1000..1000 (0: workers keep the host's)");
  }
  if (value == 0) return;
  std::optional<int> host = platform::oom_score_adj();
  if (host && value < *host && !platform::may_lower_oom_score()) {
    throw ConfigError("PoolOptions::worker_oom_score_adj",
                      std::to_string(value) + " is below this process's own oom_score_adj (" +
                          std::to_string(*host) +
                          "), and lowering it needs CAP_SYS_RESOURCE, which this process lacks; "
                          "use a value of at least " +
                          std::to_string(*host) +
                          " (the default, 1000, makes workers the OOM "
                          "killer's first choice), or 0 to keep the host's");
  }
}

void validate_worker_cgroups(const MemoryCgroupOptions& cgroups, const RecyclePolicy& recycle) {
  if (!cgroups.enabled) return;
  constexpr std::uint64_t smallest_cap = std::uint64_t{16} << 20;
  if (cgroups.max_bytes == 0 && recycle.memory_hard_limit == 0) {
    throw ConfigError(
        "MemoryCgroupOptions::max_bytes",
        "is 0, which means RecyclePolicy::memory_hard_limit, and that is 0 (off) too: "
        "give the cap in bytes, or set memory_hard_limit");
  }
  const std::uint64_t cap = cgroups.max_bytes ? cgroups.max_bytes : recycle.memory_hard_limit;
  if (cap < smallest_cap) {
    throw ConfigError("MemoryCgroupOptions::max_bytes",
                      std::to_string(cap) +
                          " bytes is too little for a worker to start (the cap counts its "
                          "libraries and page cache too); allowed: at least 16 MiB");
  }
  if (cgroups.high_bytes != 0 && cgroups.high_bytes >= cap) {
    throw ConfigError("MemoryCgroupOptions::high_bytes",
                      std::to_string(cgroups.high_bytes) + " is not below the cap (" +
                          std::to_string(cap) +
                          "): memory.high throttles before memory.max kills, so it must be lower "
                          "(or 0, not set)");
  }
}

void validate_memory_budget(const MemoryBudget& budget) {
  constexpr std::uint64_t smallest_budget = std::uint64_t{16} << 20;
  const double fraction = budget.host_limit_fraction;
  if (!(fraction >= 0 && fraction <= 1)) {  // NaN too
    throw ConfigError("MemoryBudget::host_limit_fraction",
                      "is " + std::to_string(fraction) +
                          "; allowed: 0 (not used) or above 0 up to 1 (a fraction of the host's "
                          "memory cgroup limit)");
  }
  if (budget.bytes != 0 && fraction != 0) {
    throw ConfigError("MemoryBudget::host_limit_fraction",
                      "is set together with MemoryBudget::bytes: give one of the two");
  }
  if (budget.bytes != 0 && budget.bytes < smallest_budget) {
    throw ConfigError("MemoryBudget::bytes",
                      std::to_string(budget.bytes) +
                          " bytes would not hold one worker; allowed: 0 (no budget) or at least "
                          "16 MiB");
  }
}

}  // namespace

PoolOptions validate(PoolOptions options) {
  if (options.workers == 0) {
    options.workers = std::max(1u, std::thread::hardware_concurrency());
  }
  if (options.workers > max_workers) {
    throw ConfigError("PoolOptions::workers", std::to_string(options.workers) +
                                                  " is too many; allowed: 0 (one per hardware "
                                                  "thread) to " +
                                                  std::to_string(max_workers));
  }
  if (!options.worker_command.empty()) {
    const std::string& exe = options.worker_command.front();
    if (exe.empty()) {
      throw ConfigError("PoolOptions::worker_command",
                        "element 0 must be the worker executable's path, got an empty string");
    }
    if (std::string why = platform::check_executable(exe); !why.empty()) {
      throw ConfigError("PoolOptions::worker_command",
                        "'" + exe + "' cannot be run: " + why +
                            "; give the path of an executable whose main() calls "
                            "procpool::worker_main, or leave it empty to re-execute this program");
    }
  }
  if (options.queue_capacity == 0) {
    throw ConfigError("PoolOptions::queue_capacity", "must be at least 1");
  }
  if (options.prefetch.max_jobs_ahead > 4096) {
    throw ConfigError(
        "PrefetchPolicy::max_jobs_ahead",
        std::to_string(options.prefetch.max_jobs_ahead) + " is out of range; allowed: 0..4096");
  }
  if (options.prefetch.max_work_ahead.count() < 0) {
    throw ConfigError("PrefetchPolicy::max_work_ahead", "must not be negative");
  }
  if (options.prefetch.when_jobs_take_under.count() < 0) {
    throw ConfigError("PrefetchPolicy::when_jobs_take_under", "must not be negative");
  }
  if (options.spin.enabled &&
      (options.spin.budget.count() < 1 || options.spin.budget > std::chrono::milliseconds(1))) {
    throw ConfigError("SpinPolicy::budget",
                      std::to_string(options.spin.budget.count()) +
                          " microseconds is out of range; allowed: 1..1000 microseconds (or "
                          "SpinPolicy::enabled = false to never poll)");
  }
  if (options.max_payload_bytes == 0 || options.max_payload_bytes > max_message_bytes) {
    throw ConfigError("PoolOptions::max_payload_bytes",
                      std::to_string(options.max_payload_bytes) +
                          " is out of range; allowed: " + bytes_range(1, max_message_bytes));
  }
  if (options.max_result_bytes == 0 || options.max_result_bytes > max_message_bytes) {
    throw ConfigError("PoolOptions::max_result_bytes",
                      std::to_string(options.max_result_bytes) +
                          " is out of range; allowed: " + bytes_range(1, max_message_bytes));
  }
  std::size_t ring = options.ring_bytes;
  if (ring < min_ring_bytes || ring > max_ring_bytes || (ring & (ring - 1)) != 0) {
    throw ConfigError("PoolOptions::ring_bytes", std::to_string(ring) +
                                                     " must be a power of two in " +
                                                     bytes_range(min_ring_bytes, max_ring_bytes));
  }
  if (options.job_timeout.count() < 0) {
    throw ConfigError("PoolOptions::job_timeout", "must be 0 (none) or positive");
  }
  if (options.kill_grace.count() < 0) {
    throw ConfigError("PoolOptions::kill_grace", "must be 0 (SIGKILL at once) or positive");
  }
  if (options.start_timeout.count() <= 0) {
    throw ConfigError("PoolOptions::start_timeout", "must be positive");
  }
  if (options.restart_storm_threshold == 0) {
    throw ConfigError("PoolOptions::restart_storm_threshold", "must be at least 1");
  }
  if (options.restart_storm_window.count() <= 0) {
    throw ConfigError("PoolOptions::restart_storm_window", "must be positive");
  }
  if (options.restart_backoff_initial.count() < 0 ||
      options.restart_backoff_max < options.restart_backoff_initial) {
    throw ConfigError("PoolOptions::restart_backoff_initial",
                      "must be 0 or positive and not above restart_backoff_max");
  }
  if (options.min_workers && *options.min_workers > options.workers) {
    throw ConfigError("PoolOptions::min_workers",
                      std::to_string(*options.min_workers) + " is above workers (" +
                          std::to_string(options.workers) + "), the maximum; allowed: 0.." +
                          std::to_string(options.workers));
  }
  const RecyclePolicy& recycle = options.recycle;
  if (recycle.memory_soft_limit && recycle.memory_hard_limit &&
      recycle.memory_soft_limit >= recycle.memory_hard_limit) {
    throw ConfigError("RecyclePolicy::memory_soft_limit",
                      std::to_string(recycle.memory_soft_limit) +
                          " is not below memory_hard_limit (" +
                          std::to_string(recycle.memory_hard_limit) +
                          "): the soft limit retires gracefully before the hard limit kills, so it "
                          "must be lower (or set one of them to 0)");
  }
  if (recycle.max_jobs == 0 && recycle.max_jobs_jitter != 0) {
    throw ConfigError("RecyclePolicy::max_jobs_jitter", "is set but max_jobs is 0 (no limit)");
  }
  if (recycle.max_lifetime.count() < 0 || recycle.max_lifetime_jitter.count() < 0 ||
      recycle.idle_timeout.count() < 0) {
    throw ConfigError("RecyclePolicy::max_lifetime", "durations must be 0 (off) or positive");
  }
  if (recycle.max_lifetime.count() == 0 && recycle.max_lifetime_jitter.count() != 0) {
    throw ConfigError("RecyclePolicy::max_lifetime_jitter",
                      "is set but max_lifetime is 0 (no limit)");
  }
  if (recycle.memory_sample_interval < std::chrono::milliseconds(10)) {
    throw ConfigError("RecyclePolicy::memory_sample_interval", "must be at least 10 ms");
  }
  if (recycle.memory_read_min_interval.count() < 0 ||
      recycle.memory_read_min_interval > recycle.memory_sample_interval) {
    throw ConfigError("RecyclePolicy::memory_read_min_interval",
                      "must be between 0 (read after every job) and memory_sample_interval");
  }
  if (recycle.max_concurrent_recycles == 0) {
    throw ConfigError("RecyclePolicy::max_concurrent_recycles", "must be at least 1");
  }
  if (recycle.baseline_after_jobs == 0) {
    throw ConfigError("RecyclePolicy::baseline_after_jobs", "must be at least 1");
  }
  if (recycle.address_space_limit && recycle.address_space_limit < (std::uint64_t{64} << 20)) {
    throw ConfigError("RecyclePolicy::address_space_limit",
                      "below 64 MiB a worker cannot even load its libraries; use 0 for no limit");
  }
  if (options.destructor_drain.count() < 0) {
    throw ConfigError("PoolOptions::destructor_drain", "must be 0 or positive");
  }
  if (options.stderr_tail_lines > 1000) {
    throw ConfigError("PoolOptions::stderr_tail_lines", "allowed: 0..1000");
  }
  validate_security(options.security, options.recycle.memory_metric);
  validate_oom_score_adj(options.worker_oom_score_adj);
  validate_worker_cgroups(options.worker_cgroups, options.recycle);
  validate_memory_budget(options.memory_budget);
  return options;
}

}  // namespace procpool::detail
