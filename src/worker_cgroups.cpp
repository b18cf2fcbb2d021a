#include "worker_cgroups.hpp"

#include <fmt/format.h>

#include <atomic>
#include <charconv>
#include <system_error>
#include <thread>

#include "procpool/error.hpp"

namespace procpool::detail {

namespace {

constexpr std::string_view pool_prefix = "procpool-";

// The pool's directory: procpool-<pid namespace>-<host pid>-<pool number in this host>. The
// namespace tells a later sweep whether the pid means what it meant here.
std::string pool_directory_name(std::uint64_t pid_namespace) {
  static std::atomic<unsigned> pools{0};
  return fmt::format("{}{}-{}-{}", pool_prefix, pid_namespace, platform::current_pid(), ++pools);
}

// The namespace and pid of a pool directory's name; nullopt if it is not one.
std::optional<std::pair<std::uint64_t, int>> parse_pool_directory_name(std::string_view name) {
  if (!name.starts_with(pool_prefix)) return std::nullopt;
  name.remove_prefix(pool_prefix.size());
  std::uint64_t fields[3] = {};
  for (int i = 0; i < 3; ++i) {
    auto dash = name.find('-');
    if ((i < 2) != (dash != std::string_view::npos)) return std::nullopt;
    std::string_view field = name.substr(0, dash);
    auto [end, error] = std::from_chars(field.data(), field.data() + field.size(), fields[i]);
    if (error != std::errc() || end != field.data() + field.size() || field.empty()) {
      return std::nullopt;
    }
    if (i < 2) name.remove_prefix(dash + 1);
  }
  return std::make_pair(fields[0], static_cast<int>(fields[1]));
}

}  // namespace

WorkerCgroup::WorkerCgroup(WorkerCgroup&& other) noexcept
    : procs(std::move(other.procs)),
      owner_(std::exchange(other.owner_, nullptr)),
      cgroup_(std::move(other.cgroup_)) {}

WorkerCgroup& WorkerCgroup::operator=(WorkerCgroup&& other) noexcept {
  if (this != &other) {
    if (owner_) release();
    procs = std::move(other.procs);
    owner_ = std::exchange(other.owner_, nullptr);
    cgroup_ = std::move(other.cgroup_);
  }
  return *this;
}

WorkerCgroup::~WorkerCgroup() {
  if (owner_) release();
}

CgroupOomReading WorkerCgroup::oom_reading() const {
  CgroupOomReading reading;
  if (!owner_) return reading;
  reading.directory = cgroup_.directory;
  reading.oom_kills = platform::oom_kill_count(cgroup_).value_or(0);
  reading.reached_cap = platform::reached_own_limit(cgroup_);
  reading.cap_bytes = owner_->cap_bytes();
  return reading;
}

void WorkerCgroup::release() noexcept {
  if (!owner_) return;
  procs.reset();
  std::exchange(owner_, nullptr)->remove(std::move(cgroup_));
}

WorkerCgroups::WorkerCgroups(const MemoryCgroupOptions& options, std::uint64_t cap_bytes,
                             const std::optional<platform::MemoryCgroup>& host_cgroup)
    : caps_{cap_bytes, options.high_bytes} {
  std::optional<platform::MemoryCgroup> parent;
  if (!options.parent.empty()) {
    std::string why;
    parent = platform::memory_cgroup_at(options.parent, why);
    if (!parent) why_not_ = "MemoryCgroupOptions::parent: " + why;
  } else if (host_cgroup) {
    parent = host_cgroup;
  } else {
    std::string why;
    platform::own_memory_cgroup(why);
    why_not_ = "the host's memory cgroup was not found: " + why;
  }
  if (parent) why_not_ = platform::enable_memory_for_children(*parent);
  const std::optional<std::uint64_t> pid_namespace = platform::pid_namespace();
  if (why_not_.empty() && !pid_namespace) why_not_ = "/proc/self/ns/pid cannot be read";
  if (why_not_.empty()) {
    sweep(*parent);
    try {
      platform::MemoryCgroup pool =
          platform::make_child_cgroup(*parent, pool_directory_name(*pid_namespace));
      why_not_ = platform::enable_memory_for_children(pool);
      if (why_not_.empty()) {
        pool_ = std::move(pool);
      } else {
        platform::remove_cgroup(pool);
      }
    } catch (const std::system_error& e) {
      why_not_ = fmt::format("cannot make the pool's memory cgroup in {}: {}", parent->directory,
                             e.what());
    }
  }
  if (!pool_ && options.required) {
    throw ConfigError("MemoryCgroupOptions::required",
                      "per-worker memory cgroups cannot be set up here: " + why_not_ +
                          " (docs/memory.md lists the layouts that allow them; set required = "
                          "false to run with the sampled limits alone)");
  }
}

WorkerCgroups::~WorkerCgroups() {
  finish(std::chrono::seconds(2));
}

MemoryEnforcement WorkerCgroups::enforcement() const noexcept {
  if (!pool_) return MemoryEnforcement::sampled;
  return pool_->version == platform::CgroupVersion::v1 ? MemoryEnforcement::cgroup_v1
                                                       : MemoryEnforcement::cgroup_v2;
}

WorkerCgroup WorkerCgroups::make(std::uint64_t worker_id) {
  if (!pool_) {
    throw std::system_error(std::make_error_code(std::errc::operation_not_permitted),
                            "per-worker memory cgroups are off: " + why_not_);
  }
  if (ahead_) {
    if (ahead_id_ == worker_id) return std::move(ahead_);
    ahead_ = WorkerCgroup();  // named for another worker: removed
  }
  WorkerCgroup made;
  made.cgroup_ = platform::make_child_cgroup(*pool_, fmt::format("worker-{}", worker_id));
  made.owner_ = this;  // from here on, removed if what follows throws
  platform::cap_memory(made.cgroup_, caps_);
  made.procs = platform::open_cgroup_procs(made.cgroup_);
  return made;
}

void WorkerCgroups::make_ahead(std::uint64_t worker_id) noexcept {
  if (!pool_ || (ahead_ && ahead_id_ == worker_id)) return;
  try {
    ahead_ = make(worker_id);
    ahead_id_ = worker_id;
  } catch (const std::exception&) {
    // make() tries again when the worker starts, and says why it cannot.
  }
}

void WorkerCgroups::remove(platform::MemoryCgroup cgroup) noexcept {
  // Empty, as it usually is once its worker is reaped: then nothing needs reading or killing.
  if (platform::remove_cgroup(cgroup)) return;
  platform::kill_cgroup_processes(cgroup);
  const Clock::time_point now = Clock::now();
  constexpr auto first_interval = std::chrono::milliseconds(1);
  try {
    pending_.push_back(
        {std::move(cgroup), now + first_interval, first_interval, now + removal_patience});
  } catch (const std::bad_alloc&) {
    // Left for finish(), which removes every child of the pool's directory.
  }
}

WorkerCgroups::Removals WorkerCgroups::retry_removals(Clock::time_point now) {
  Removals removals;
  constexpr auto longest_interval = std::chrono::milliseconds(100);
  for (auto it = pending_.begin(); it != pending_.end();) {
    if (now >= it->next_try) {
      platform::kill_cgroup_processes(it->cgroup);
      if (platform::remove_cgroup(it->cgroup)) {
        it = pending_.erase(it);
        continue;
      }
      if (now >= it->give_up_at) {
        removals.abandoned.push_back(it->cgroup.directory);
        it = pending_.erase(it);
        continue;
      }
      it->interval = std::min<Clock::duration>(it->interval * 2, longest_interval);
      it->next_try = now + it->interval;
    }
    if (!removals.next || it->next_try < *removals.next) removals.next = it->next_try;
    ++it;
  }
  return removals;
}

std::vector<std::string> WorkerCgroups::finish(std::chrono::milliseconds patience) {
  ahead_ = WorkerCgroup();
  const Clock::time_point deadline = Clock::now() + patience;
  for (Pending& pending : pending_)
    pending.give_up_at = deadline;
  for (;;) {
    for (Pending& pending : pending_)
      pending.next_try = Clock::now();
    retry_removals(Clock::now());  // what it gives up on is looked at once more below
    if (pending_.empty()) break;
    // What still runs there was SIGKILLed: it is gone within a scheduling round or two.
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  std::vector<std::string> left;
  if (pool_) {
    for (const std::string& name : platform::child_cgroups(*pool_)) {
      platform::MemoryCgroup child{pool_->version, pool_->directory + "/" + name,
                                   pool_->mount_point};
      platform::kill_cgroup_processes(child);
      if (!platform::remove_cgroup(child)) left.push_back(child.directory);
    }
    if (left.empty() && !platform::remove_cgroup(*pool_)) left.push_back(pool_->directory);
    pool_.reset();
  }
  return left;
}

void WorkerCgroups::sweep(const platform::MemoryCgroup& parent) {
  const std::optional<std::uint64_t> our_namespace = platform::pid_namespace();
  for (const std::string& name : platform::child_cgroups(parent)) {
    std::optional<std::pair<std::uint64_t, int>> owner = parse_pool_directory_name(name);
    // Another pid namespace's pool: its pid says nothing here, so it is left alone.
    if (!owner || owner->first != our_namespace || platform::process_exists(owner->second)) {
      continue;
    }
    // What runs there is killed now, and the directories go once it has (retry_removals): the
    // pool's own after its workers', which are queued first.
    platform::MemoryCgroup stale{parent.version, parent.directory + "/" + name, parent.mount_point};
    for (const std::string& worker : platform::child_cgroups(stale)) {
      remove({stale.version, stale.directory + "/" + worker, stale.mount_point});
    }
    remove(std::move(stale));
    ++swept_;
  }
}

}  // namespace procpool::detail
