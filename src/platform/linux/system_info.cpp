// Reading the system on Linux (/proc), and shared memory.
#include <fcntl.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <new>

#include "platform/linux/syscall.hpp"
#include "platform/platform.hpp"

namespace procpool::platform {

namespace {

// MFD_NOEXEC_SEAL (Linux 6.3), which older C library headers do not define.
constexpr unsigned memfd_noexec_seal = 0x0008U;

}  // namespace

namespace {

// "size resident shared text lib data dt" in pages. Parsed by hand: it is read after every job
// that leaves a worker idle, and sscanf was a sixth of the read's CPU in a perf profile.
std::optional<std::uint64_t> parse_statm_resident(const char* text, std::size_t n) noexcept {
  const char* end = text + n;
  std::uint64_t size_pages = 0, resident_pages = 0;
  auto [after_size, size_error] = std::from_chars(text, end, size_pages);
  if (size_error != std::errc() || after_size == end || *after_size != ' ') return std::nullopt;
  auto [after_resident, resident_error] = std::from_chars(after_size + 1, end, resident_pages);
  if (resident_error != std::errc()) return std::nullopt;
  static const long page_size = ::sysconf(_SC_PAGESIZE);
  return resident_pages * static_cast<std::uint64_t>(page_size);
}

}  // namespace

RssReader::RssReader(int pid) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/statm", pid);
  statm_ = UniqueFd(detail::keep_off_stdio(::open(path, O_RDONLY | O_CLOEXEC)));
  if (!statm_) detail::throw_errno(std::string("open ") + path + " (to read the worker's memory)");
}

std::optional<std::uint64_t> RssReader::read() const noexcept {
  if (!statm_) return std::nullopt;
  char text[128];
  // /proc files regenerate their content on a read at offset 0.
  ssize_t n = ::pread(statm_.get(), text, sizeof text, 0);
  if (n <= 0) return std::nullopt;  // ESRCH once the process is gone
  return parse_statm_resident(text, static_cast<std::size_t>(n));
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

bool set_dumpable(bool dumpable) noexcept {
  return ::prctl(PR_SET_DUMPABLE, dumpable ? 1 : 0, 0, 0, 0) == 0;
}

bool parent_is(int expected_parent) noexcept {
  return static_cast<int>(::getppid()) == expected_parent;
}

std::uint32_t effective_uid() noexcept {
  return static_cast<std::uint32_t>(::geteuid());
}

std::optional<int> oom_score_adj() noexcept {
  std::FILE* file = std::fopen("/proc/self/oom_score_adj", "re");
  if (!file) return std::nullopt;
  int value = 0;
  const bool read = std::fscanf(file, "%d", &value) == 1;
  std::fclose(file);
  if (!read) return std::nullopt;
  return value;
}

bool may_lower_oom_score() noexcept {
  std::FILE* file = std::fopen("/proc/self/status", "re");
  if (!file) return false;
  constexpr unsigned cap_sys_resource = 24;  // linux/capability.h
  unsigned long long effective = 0;
  bool found = false;
  char line[256];
  while (!found && std::fgets(line, sizeof line, file)) {
    found = std::sscanf(line, "CapEff: %llx", &effective) == 1;
  }
  std::fclose(file);
  return found && ((effective >> cap_sys_resource) & 1) != 0;
}

std::uint64_t hard_limit(Resource resource) noexcept {
  rlimit limit{};
  if (::getrlimit(resource == Resource::open_files ? RLIMIT_NOFILE : RLIMIT_CORE, &limit) != 0 ||
      limit.rlim_max == RLIM_INFINITY) {
    return UINT64_MAX;
  }
  return static_cast<std::uint64_t>(limit.rlim_max);
}

void* map_anonymous(std::size_t bytes) {
  void* address =
      ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (address == MAP_FAILED) throw std::bad_alloc();
  return address;
}

void unmap_anonymous(void* address, std::size_t bytes) noexcept {
  ::munmap(address, bytes);
}

bool keep_from_forks(void* address, std::size_t bytes) noexcept {
  return ::madvise(address, bytes, MADV_DONTFORK) == 0;
}

int map_populate_option() noexcept {
  return MAP_POPULATE;
}

bool protect_memory(void* address, std::size_t bytes, MemoryAccess access) noexcept {
  const int protection = access == MemoryAccess::none   ? PROT_NONE
                         : access == MemoryAccess::read ? PROT_READ
                                                        : PROT_READ | PROT_WRITE;
  return ::mprotect(address, bytes, protection) == 0;
}

std::optional<FileInfo> file_info(int fd) noexcept {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return std::nullopt;
  return FileInfo{static_cast<std::uint64_t>(st.st_size), static_cast<std::uint64_t>(st.st_dev),
                  static_cast<std::uint64_t>(st.st_ino)};
}

UniqueFd make_shared_memory(std::uint64_t size, const char* name) {
  // No executable mappings of it are ever wanted, and with vm.memfd_noexec = 2 the kernel refuses
  // a memfd without this seal; kernels before 6.3 do not know the flag (EINVAL) and get none.
  constexpr unsigned flags = MFD_CLOEXEC | MFD_ALLOW_SEALING;
  int created = static_cast<int>(::syscall(SYS_memfd_create, name, flags | memfd_noexec_seal));
  if (created < 0 && errno == EINVAL) {
    created = static_cast<int>(::syscall(SYS_memfd_create, name, flags));
  }
  if (created < 0) detail::throw_errno("memfd_create");
  UniqueFd fd(detail::keep_off_stdio(created));
  if (!fd) detail::throw_errno("fcntl(memfd, F_DUPFD_CLOEXEC)");
  if (::fchmod(fd.get(), 0600) != 0) detail::throw_errno("fchmod(memfd, 0600)");
  if (detail::retry_on_eintr([&] { return ::ftruncate(fd.get(), static_cast<off_t>(size)); }) !=
      0) {
    detail::throw_errno("ftruncate(memfd, " + std::to_string(size) + ")");
  }
  if (::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
    detail::throw_errno("fcntl(memfd, F_ADD_SEALS)");
  }
  return fd;
}

std::vector<std::string> host_environment() {
  std::vector<std::string> entries;
  for (char** entry = environ; entry && *entry; ++entry)
    entries.emplace_back(*entry);
  return entries;
}

std::size_t online_cpus() noexcept {
  long n = ::sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? static_cast<std::size_t>(n) : 1;
}

std::size_t usable_cpus() noexcept {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) != 0) return online_cpus();
  const int n = CPU_COUNT(&set);
  return n > 0 ? static_cast<std::size_t>(n) : 1;
}

void yield_cpu() noexcept {
  ::sched_yield();
}

std::optional<std::uint64_t> involuntary_switches() noexcept {
  struct rusage usage {};
  if (::getrusage(RUSAGE_THREAD, &usage) != 0) return std::nullopt;
  return static_cast<std::uint64_t>(usage.ru_nivcsw);
}

int current_cpu() noexcept {
  return ::sched_getcpu();
}

}  // namespace procpool::platform
