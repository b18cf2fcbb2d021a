#include "bench_jobs.hpp"

#include <procpool/procpool.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>

#include "measurements.hpp"

namespace bench {

procpool::JobRegistry make_bench_registry() {
  procpool::JobRegistry jobs;
  jobs.add("noop",
           [](procpool::JobContext&, std::span<const std::byte>) { return procpool::Bytes{}; });
  jobs.add("echo", [](procpool::JobContext&, std::span<const std::byte> in) {
    return procpool::Bytes(in.begin(), in.end());
  });
  jobs.add_owning("owning_echo",
                  [](procpool::JobContext&, procpool::Bytes payload) { return payload; });
  jobs.add_in_place("in_place_echo", [](procpool::JobContext&, std::span<const std::byte> in,
                                        std::span<std::byte> out) {
    std::size_t n = std::min(in.size(), out.size());
    std::memcpy(out.data(), in.data(), n);
    return n;
  });
  // Keeps the CPU busy for the microseconds its payload gives (a job that needs its core).
  jobs.add("burn_cpu_us", [](procpool::JobContext&, std::span<const std::byte> in) {
    auto us = procpool::Codec<std::uint32_t>::decode(in);
    auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(us);
    std::uint32_t turns = 0;
    while (std::chrono::steady_clock::now() < until)
      ++turns;
    return procpool::Codec<std::uint32_t>::encode(turns);
  });
  jobs.add("grow_mb_stamped", grow_mb_stamped);
  return jobs;
}

}  // namespace bench
