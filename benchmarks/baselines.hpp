// Baselines the harness builds and runs itself: what the hardware and the kernel allow.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "bench_util.hpp"

namespace bench {

enum class PingPongKind {
  /// One byte each way over two pipes.
  pipe,
  /// A shared-memory word, with FUTEX_WAIT / FUTEX_WAKE (no spinning).
  futex,
  /// Two eventfds, a write and a blocking read each way.
  eventfd,
  /// A shared-memory word that both sides poll without a system call: the floor of a polled round
  /// trip, and the tail the machine itself adds to one (a vCPU taken by the hypervisor, an
  /// interrupt). Meaningful only with the two on different CPUs.
  spin,
};
const char* to_string(PingPongKind kind) noexcept;

struct PingPongRun {
  /// One round trip each, in nanoseconds.
  std::vector<double> rtt_ns;
  /// Wall time of the whole timed loop.
  double elapsed_ns = 0;
  /// Context switches (voluntary and involuntary, getrusage) of both processes together per
  /// round trip, warm-up included.
  double switches_per_round_trip = 0;
};

/// A two-process ping-pong: forks a child, places both by `placement`, runs `warmup` untimed
/// round trips and then `n` timed ones. Call only while this process has a single thread.
PingPongRun ping_pong(PingPongKind kind, Placement placement, std::size_t n, std::size_t warmup);

/// The floor of the zero-copy row: a hand-off of `bytes` to another process and back, with no
/// library in between. Per sample, timed: the parent writes `bytes` from a private source into an
/// input shared with a forked child (MAP_SHARED), wakes it with a futex, the child copies the
/// input into a shared output and wakes the parent. Alternately, the same two copies made by the
/// parent alone, from the same source into the same shared buffers. Each sample of either starts
/// from a flushed cache; neither process is pinned. Call only while this process has a single
/// thread.
struct HandoffRun {
  std::vector<double> handoff_ms;
  std::vector<double> memcpy_ms;
};
HandoffRun handoff(std::size_t bytes, std::size_t samples);

/// memcpy of `bytes` between two buffers already faulted in: one timing per sample, in ns.
std::vector<double> memcpy_ns(std::size_t bytes, std::size_t samples);

/// Spawn-to-ready of a small dynamically linked C++ program (this binary, started with
/// `--bench-spawn-child`, which writes one byte to stdout and exits): posix_spawn until that byte
/// is read, in ns, one per sample.
std::vector<double> spawn_to_ready_ns(const std::string& self_exe, std::size_t samples);

/// What the `--bench-spawn-child` process does.
int spawn_child_main();

}  // namespace bench
