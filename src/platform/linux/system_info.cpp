// Reading the system on Linux: /proc and /dev/shm.
#include <unistd.h>

#include <cstdio>
#include <filesystem>

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

std::optional<std::uint64_t> read_rss_bytes(int pid) noexcept {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/statm", pid);
  std::FILE* file = std::fopen(path, "re");
  if (!file) return std::nullopt;
  unsigned long long size_pages = 0, resident_pages = 0;
  int fields = std::fscanf(file, "%llu %llu", &size_pages, &resident_pages);
  std::fclose(file);
  if (fields != 2) return std::nullopt;
  static const long page_size = ::sysconf(_SC_PAGESIZE);
  return static_cast<std::uint64_t>(resident_pages) * static_cast<std::uint64_t>(page_size);
}

}  // namespace procpool::platform
