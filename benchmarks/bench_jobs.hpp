// The jobs procpool-bench's workers run (the benchmark binary is its own worker).
#pragma once

#include <procpool/job_registry.hpp>

namespace bench {

/// noop, echo, owning_echo, in_place_echo, burn_cpu_us (its payload: the microseconds, a
/// Codec<std::uint32_t>) and grow_mb_stamped (memory_caps.cpp).
procpool::JobRegistry make_bench_registry();

}  // namespace bench
