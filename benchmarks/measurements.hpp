// procpool-bench's steps: each measures one topic and adds its rows to the report, after the rows
// of the steps before it (a row's baseline is often a row of an earlier step).
#pragma once

#include <procpool/procpool.hpp>

#include <cstddef>
#include <span>
#include <string_view>
#include <vector>

#include "config.hpp"
#include "report.hpp"

namespace bench {

// baseline_rows.cpp: what the hardware, the kernel and Python allow. The native baselines fork, so
// they run while this process has one thread.
void measure_native_baselines(const Config& cfg, Report& report);
void measure_python_baselines(const Config& cfg, Report& report);

// rtt.cpp: a no-op job's round trip on an idle pool, per placement and API.
void measure_round_trips(const Config& cfg, Report& report);

// throughput.cpp: one-at-a-time, pipelined and batched no-op jobs, and their wake-up syscalls.
void measure_blocking(const Config& cfg, Report& report);
void measure_pipelined(const Config& cfg, Report& report);
void measure_syscalls(const Config& cfg, Report& report);

// payload.cpp: 16 MiB in and out, copied through the rings or lent (zero-copy).
void measure_payloads(const Config& cfg, Report& report);
void measure_zero_copy(const Config& cfg, Report& report);

// recycle.cpp: replacing a worker, and max_jobs = 1 throughput.
void measure_recycles(const Config& cfg, Report& report);
void measure_max_jobs1(const Config& cfg, Report& report);

// memory_caps.cpp: per-worker memory cgroups.
void measure_memory_caps(const Config& cfg, Report& report);

// idle_and_leaks.cpp: what the host keeps over many jobs, and what an idle pool costs.
void measure_leaks(const Config& cfg, Report& report);
void measure_idle(const Config& cfg, Report& report);

// spin.cpp: SpinPolicy on against off.
void measure_spin(const Config& cfg, Report& report);

/// Adds the row of the memcpy timings taken beside `row`, just before it in the table, and makes it
/// that row's baseline; `copies` says which buffers they copied. Returns `row` (which has moved).
Row& add_memcpy_beside(Report& report, Row& row, std::vector<double> ms,
                       std::string_view copies = "a source, into one private buffer, into another");

/// Retiring event -> the next ready event, one per recycle of a one-worker pool with max_jobs = 1
/// running `n` no-op jobs, in ms. `spawn_ms` gets retiring -> spawned (the supervisor creating the
/// segment and launching the process) and `start_ms` spawned -> ready (the new process loading,
/// attaching and saying hello). With `caps`, the worker runs in a memory cgroup of its own
/// (PoolOptions::worker_cgroups).
std::vector<double> recycle_latencies_ms(std::size_t n, procpool::StartMode mode,
                                         std::vector<double>* spawn_ms = nullptr,
                                         std::vector<double>* start_ms = nullptr,
                                         const procpool::MemoryCgroupOptions* caps = nullptr);

/// The job "grow_mb_stamped" (memory_caps.cpp): grows by touched 1 MiB steps up to the MiB its
/// payload gives ("<grow MiB> <limit MiB> <stamps file>"), stamping each step and the moment its
/// resident memory reaches the limit, then waits to be stopped: a leak racing its worker's memory
/// limit.
procpool::Bytes grow_mb_stamped(procpool::JobContext& context, std::span<const std::byte> in);

}  // namespace bench
