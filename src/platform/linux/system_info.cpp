// Reading the system on Linux: /proc and /dev/shm.
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "platform/linux/syscall.hpp"
#include "platform/platform.hpp"

namespace procpool::platform {

std::vector<std::string> list_shared_memory(std::string_view prefix) {
  std::vector<std::string> names;
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator("/dev/shm", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (name.starts_with(prefix)) names.push_back(std::move(name));
  }
  return names;
}

namespace {

std::optional<std::uint64_t> parse_statm_resident(const char* text) noexcept {
  unsigned long long size_pages = 0, resident_pages = 0;
  if (std::sscanf(text, "%llu %llu", &size_pages, &resident_pages) != 2) return std::nullopt;
  static const long page_size = ::sysconf(_SC_PAGESIZE);
  return static_cast<std::uint64_t>(resident_pages) * static_cast<std::uint64_t>(page_size);
}

}  // namespace

RssReader::RssReader(int pid) noexcept {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/statm", pid);
  statm_ = UniqueFd(::open(path, O_RDONLY | O_CLOEXEC));
}

std::optional<std::uint64_t> RssReader::read() const noexcept {
  if (!statm_) return std::nullopt;
  char text[128];
  // /proc files regenerate their content on a read at offset 0.
  ssize_t n = ::pread(statm_.get(), text, sizeof text - 1, 0);
  if (n <= 0) return std::nullopt;  // ESRCH once the process is gone
  text[n] = '\0';
  return parse_statm_resident(text);
}

std::optional<SharedMemoryUsage> read_pss_uss(int pid) noexcept {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/smaps_rollup", pid);
  std::FILE* file = std::fopen(path, "re");
  if (!file) return std::nullopt;
  SharedMemoryUsage usage;
  bool found_pss = false;
  char line[256];
  while (std::fgets(line, sizeof line, file)) {
    unsigned long long kib = 0;
    if (std::sscanf(line, "Pss: %llu kB", &kib) == 1) {
      usage.pss = kib * 1024;
      found_pss = true;
    } else if (std::sscanf(line, "Private_Clean: %llu kB", &kib) == 1 ||
               std::sscanf(line, "Private_Dirty: %llu kB", &kib) == 1) {
      usage.uss += kib * 1024;
    }
  }
  std::fclose(file);
  if (!found_pss) return std::nullopt;
  return usage;
}

bool limit_address_space(std::uint64_t bytes) noexcept {
  rlimit limit{static_cast<rlim_t>(bytes), static_cast<rlim_t>(bytes)};
  return ::setrlimit(RLIMIT_AS, &limit) == 0;
}

bool make_non_dumpable() noexcept {
  return ::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0;
}

std::uint32_t effective_uid() noexcept {
  return static_cast<std::uint32_t>(::geteuid());
}

std::uint64_t hard_limit(Resource resource) noexcept {
  rlimit limit{};
  if (::getrlimit(resource == Resource::open_files ? RLIMIT_NOFILE : RLIMIT_CORE, &limit) != 0 ||
      limit.rlim_max == RLIM_INFINITY) {
    return UINT64_MAX;
  }
  return static_cast<std::uint64_t>(limit.rlim_max);
}

void change_owner(int fd, std::uint32_t uid, std::uint32_t gid) {
  if (::fchown(fd, static_cast<uid_t>(uid), static_cast<gid_t>(gid)) != 0) {
    detail::throw_errno("fchown(" + std::to_string(uid) + ", " + std::to_string(gid) + ")");
  }
}

void size_shared_memory(int fd, std::uint64_t size, std::uint64_t reserve) {
  if (detail::retry_on_eintr([&] { return ::ftruncate(fd, static_cast<off_t>(size)); }) != 0) {
    detail::throw_errno("ftruncate(" + std::to_string(size) + ")");
  }
  if (reserve > 0 && detail::retry_on_eintr(
                         [&] { return ::fallocate(fd, 0, 0, static_cast<off_t>(reserve)); }) != 0) {
    detail::throw_errno("fallocate(" + std::to_string(reserve) + ")");
  }
}

std::vector<std::string> host_environment() {
  std::vector<std::string> entries;
  for (char** entry = environ; entry && *entry; ++entry)
    entries.emplace_back(*entry);
  return entries;
}

}  // namespace procpool::platform
