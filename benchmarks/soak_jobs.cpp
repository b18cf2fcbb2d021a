#include "soak_jobs.hpp"

#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace bench {

namespace {

using procpool::Bytes;
using procpool::JobContext;
using Input = std::span<const std::byte>;

std::uint32_t mebibytes_in(Input in) {
  std::uint32_t mib = 0;
  if (in.size() != sizeof mib) throw std::runtime_error("the payload is not a std::uint32_t");
  std::memcpy(&mib, in.data(), sizeof mib);
  return mib;
}

// Memory a leaky native library never gives back: allocated, every page touched, kept.
void leak_mebibytes(std::uint32_t mib) {
  static std::vector<std::unique_ptr<char[]>> leaked;
  constexpr std::size_t block = std::size_t{1} << 20;
  for (std::uint32_t i = 0; i < mib; ++i) {
    leaked.push_back(std::make_unique<char[]>(block));
    for (std::size_t page = 0; page < block; page += 4096)
      leaked.back()[page] = 1;
  }
}

// A native library's helper process that nobody told to stop: it ignores the polite signals.
pid_t start_grandchild() {
  const pid_t child = ::fork();
  if (child < 0) throw std::runtime_error("fork failed");
  if (child == 0) {
    for (int sig : {SIGTERM, SIGHUP, SIGINT})
      ::signal(sig, SIG_IGN);
    hang_forever();
  }
  return child;
}

}  // namespace

std::span<std::byte> own_segment() {
  std::ifstream maps("/proc/self/maps");
  for (std::string line; std::getline(maps, line);) {
    if (line.find("/memfd:procpool-segment") == std::string::npos) continue;
    std::uintptr_t begin = 0, end = 0;
    if (std::sscanf(line.c_str(), "%" SCNxPTR "-%" SCNxPTR, &begin, &end) != 2) break;
    return {reinterpret_cast<std::byte*>(begin), end - begin};
  }
  throw std::runtime_error("no procpool segment is mapped in this worker");
}

void ring_doorbell() {
  const std::uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(3, &one, sizeof one);
}

void hang_forever() {
  for (;;)
    ::pause();
}

procpool::JobRegistry make_soak_registry() {
  procpool::JobRegistry jobs;
  jobs.add("echo", [](JobContext&, Input in) { return Bytes(in.begin(), in.end()); });
  jobs.add("leak_mb", [](JobContext&, Input in) {
    leak_mebibytes(mebibytes_in(in));
    return Bytes{};
  });
  // Grows by 8 MiB every 5 ms up to the payload's MiB, then holds: a job that balloons mid-run.
  jobs.add("balloon_mb", [](JobContext&, Input in) -> Bytes {
    const std::uint32_t target = mebibytes_in(in);
    for (std::uint32_t done = 0; done < target; done += 8) {
      leak_mebibytes(8);
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    hang_forever();
  });
  jobs.add("fail", [](JobContext&, Input in) -> Bytes {
    throw std::runtime_error("handler failed: " +
                             std::string(reinterpret_cast<const char*>(in.data()), in.size()));
  });
  jobs.add("sigkill", [](JobContext&, Input) -> Bytes {
    ::raise(SIGKILL);
    hang_forever();
  });
  jobs.add("segv", [](JobContext&, Input) -> Bytes {
    ::raise(SIGSEGV);
    hang_forever();
  });
  jobs.add("abort", [](JobContext&, Input) -> Bytes { std::abort(); });
  jobs.add("exit", [](JobContext&, Input in) -> Bytes {
    ::_exit(in.empty() ? 3 : static_cast<int>(in[0]));
  });
  jobs.add("hang", [](JobContext&, Input) -> Bytes { hang_forever(); });
  jobs.add("hang_ignoring_term", [](JobContext&, Input) -> Bytes {
    ::signal(SIGTERM, SIG_IGN);
    hang_forever();
  });
  // Starts a grandchild, names it on stderr and dies.
  jobs.add("grandchild_then_die", [](JobContext&, Input) -> Bytes {
    const pid_t child = start_grandchild();
    std::fprintf(stderr, "grandchild %d\n", static_cast<int>(child));
    std::fflush(stderr);
    ::raise(SIGKILL);
    hang_forever();
  });
  // Closes its ends of the channel (doorbell, output) and exits cleanly in the middle of a job.
  jobs.add("close_and_exit", [](JobContext&, Input) -> Bytes {
    for (int fd : {3, 1, 2})
      ::close(fd);
    ::_exit(0);
  });
  // Unmaps the worker's whole segment, then returns: the runtime faults writing the result.
  jobs.add("unmap_segment", [](JobContext&, Input) {
    const std::span<std::byte> segment = own_segment();
    ::munmap(segment.data(), segment.size());
    return Bytes{};
  });
  // Noise over the whole segment (its header, both rings' control blocks and both rings' data),
  // then the doorbell; hangs, so that the runtime never writes the real result.
  jobs.add("scribble_segment", [](JobContext& context, Input) -> Bytes {
    std::mt19937_64 random(context.job_id());
    for (std::byte& b : own_segment())
      b = static_cast<std::byte>(random());
    ring_doorbell();
    hang_forever();
  });
  add_wire_garbage_job(jobs);
  return jobs;
}

}  // namespace bench
