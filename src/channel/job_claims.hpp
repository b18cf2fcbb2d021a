// Which jobs sent to a worker it may still start: the host can take back jobs the worker has not
// started (jobs sent ahead behind a job that turned out long, or behind one whose worker is being
// stopped) with no doubt about whether the worker started them.
//
// Each job_start record a worker is sent has a number: 1 for the first, counting every one sent
// through its request ring (wrapping at 2^32). One 64-bit word in the segment, changed by both
// sides only by compare-and-swap, holds two of those numbers:
//   low half  `consumed`: the last job_start the worker has read (and so started or skipped);
//   high half `taken`:    the last job_start the host has taken back. Always consumed <= taken.
// The worker reading job_start `n` swaps in consumed = n and skips the job if n <= taken (it does
// not run it and sends nothing for it); otherwise it raises taken to n and runs it. The host takes
// back every job after `consumed` by swapping in taken = the last number it sent. Whichever swap
// comes first decides: a job is either run by the worker or taken back by the host, never both.
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>

namespace procpool::detail {

/// True if job_start number `a` comes after `b`, within half the number space of it.
constexpr bool job_number_after(std::uint32_t a, std::uint32_t b) noexcept {
  return static_cast<std::int32_t>(a - b) > 0;
}

/// Worker side: reads job_start number `n` (one after the last). True if the worker may run it,
/// false if the host took it back; nullopt if the word is not what only a host keeping to the
/// protocol could have left (the last consumed number is not n - 1).
inline std::optional<bool> claim_job(std::atomic<std::uint64_t>& claims, std::uint32_t n) noexcept {
  std::uint64_t seen = claims.load(std::memory_order_acquire);
  for (;;) {
    const auto consumed = static_cast<std::uint32_t>(seen);
    const auto taken = static_cast<std::uint32_t>(seen >> 32);
    if (consumed != n - 1) return std::nullopt;
    const bool run = job_number_after(n, taken);
    const std::uint64_t next = (std::uint64_t{run ? n : taken} << 32) | n;
    if (claims.compare_exchange_weak(seen, next, std::memory_order_acq_rel,
                                     std::memory_order_acquire)) {
      return run;
    }
  }
}

/// Host side: takes back every job numbered `first` to `last_sent` (the last job_start sent) that
/// the worker has not read, provided it has read every job before `first`; otherwise nothing.
/// Returns the number of the last job the worker had read: if that is first - 1 or later, the jobs
/// after it are the host's again. The half the worker writes is not trusted: the caller checks it.
inline std::uint32_t take_back_jobs(std::atomic<std::uint64_t>& claims, std::uint32_t first,
                                    std::uint32_t last_sent) noexcept {
  std::uint64_t seen = claims.load(std::memory_order_acquire);
  for (;;) {
    const auto consumed = static_cast<std::uint32_t>(seen);
    if (job_number_after(first, consumed + 1)) return consumed;  // a job before `first` unread
    const std::uint64_t next = (std::uint64_t{last_sent} << 32) | consumed;
    if (claims.compare_exchange_weak(seen, next, std::memory_order_acq_rel,
                                     std::memory_order_acquire)) {
      return consumed;
    }
  }
}

/// Host side: takes back every job numbered `first` to `last_sent` if the worker has read none of
/// them, and every job it has not read before `first` was taken back already (it is passing over
/// them); true if it did. Unlike take_back_jobs, nothing is taken back once the worker has read
/// `first`.
inline bool take_back_all_jobs(std::atomic<std::uint64_t>& claims, std::uint32_t first,
                               std::uint32_t last_sent) noexcept {
  std::uint64_t seen = claims.load(std::memory_order_acquire);
  for (;;) {
    const auto consumed = static_cast<std::uint32_t>(seen);
    const auto taken = static_cast<std::uint32_t>(seen >> 32);
    if (job_number_after(consumed + 1, first)) return false;  // it has read `first`
    if (consumed + 1 != first && job_number_after(first - 1, taken)) return false;
    const std::uint64_t next = (std::uint64_t{last_sent} << 32) | consumed;
    if (claims.compare_exchange_weak(seen, next, std::memory_order_acq_rel,
                                     std::memory_order_acquire)) {
      return true;
    }
  }
}

}  // namespace procpool::detail
