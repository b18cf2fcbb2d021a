// What procpool-bench's measurements share: a pool set up for measuring, waiting for it to settle,
// and running no-op jobs in the ways the rows compare.
#pragma once

#include <procpool/procpool.hpp>

#include <cstddef>
#include <vector>

namespace bench {

inline constexpr std::size_t mib = std::size_t{1} << 20;

/// Options of a pool of `workers` that blocks when its queue is full and logs only warnings and
/// errors.
procpool::PoolOptions pool_options(std::size_t workers);

/// Waits until `n` workers are idle and no other worker is alive (starting, retiring, stopping);
/// throws std::runtime_error after 30 s.
void settle(procpool::Pool& pool, std::size_t n);

std::vector<int> worker_pids(const procpool::Pool& pool);

/// Submits `n` jobs with the callback API (many outstanding) and waits for every outcome.
/// Returns the failures.
std::size_t run_pipelined(procpool::Pool& pool, std::size_t n, const char* job = "noop");

/// Submits `n` no-op jobs with submit_batch in batches of 1,000 and waits for every outcome,
/// through the callback form or (`futures`) through futures read in order. Returns the failures.
std::size_t run_batched(procpool::Pool& pool, std::size_t n, bool futures = false);

/// Throws std::runtime_error with the job's message if `r` failed.
void check_ok(const procpool::JobResult& r);

/// Runs `n` no-op jobs one at a time (a warm-up).
void run_noops_one_at_a_time(procpool::Pool& pool, std::size_t n);

/// The two ways to run one job and wait for it.
enum class RoundTripApi { call, submit_get };

/// Times ns.size() no-op jobs run one at a time: each round trip in nanoseconds.
void time_noop_round_trips(procpool::Pool& pool, std::vector<double>& ns, RoundTripApi api);

}  // namespace bench
