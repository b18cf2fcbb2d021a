// The jobs procpool-soak's workers run: the normal load (echo, a slow leak) and the faults, each
// misbehaving the way a native library might. Built on the public API and POSIX only, apart from
// wire_garbage.cpp.
#pragma once

#include <procpool/job_registry.hpp>

#include <cstddef>
#include <span>

namespace bench {

/// echo; leak_mb and balloon_mb (a std::uint32_t of MiB, in native byte order); the faults fail,
/// sigkill, segv, abort, exit (its code in the payload's first byte, else 3), hang,
/// hang_ignoring_term, grandchild_then_die, close_and_exit, unmap_segment, scribble_segment; and
/// garbage (wire_garbage.cpp).
procpool::JobRegistry make_soak_registry();

/// What the faults that corrupt the worker's shared segment use. The segment as this worker has
/// it mapped, found in /proc/self/maps as a native library might stumble on it; throws
/// std::runtime_error if there is none.
std::span<std::byte> own_segment();
/// Rings the supervisor's doorbell for this worker (its descriptor 3), as the runtime does after a
/// result.
void ring_doorbell();
/// Waits for a signal for ever.
[[noreturn]] void hang_forever();

/// Adds the job "garbage" (wire_garbage.cpp).
void add_wire_garbage_job(procpool::JobRegistry& jobs);

}  // namespace bench
