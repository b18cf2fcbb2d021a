// Reporter: where a pool's log lines, events and job counts go.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "procpool/events.hpp"
#include "procpool/options.hpp"
#include "procpool/result.hpp"
#include "procpool/stats.hpp"

namespace procpool::detail {

/// Calls the pool's LogSink and EventCallback, and counts jobs by outcome.
///
/// Lines and events are raised on the supervisor thread, except while a Pool::call thread works on
/// a worker in its place: there a Deferral keeps them, and the supervisor thread emits them later
/// (emit_deferred), so that they keep coming from it as LogSink and EventCallback promise.
///
/// Thread-safety: every method may be called from any thread. Its one lock guards the deferred
/// lines and is taken only in here, with nothing called under it.
class Reporter {
 public:
  Reporter(LogSink log, EventCallback on_event);
  Reporter(const Reporter&) = delete;
  Reporter& operator=(const Reporter&) = delete;

  /// To the LogSink (stderr without one, debug lines dropped). A sink that throws loses its line.
  void log(LogLevel level, const std::string& line) const noexcept;
  /// Logs the event's message, then calls the EventCallback (whose exceptions are logged).
  void emit(PoolEvent event, LogLevel level) const noexcept;

  /// While one lives, this thread's lines and events for `reporter` are kept for emit_deferred().
  class Deferral {
   public:
    explicit Deferral(const Reporter& reporter) noexcept;
    ~Deferral();
    Deferral(const Deferral&) = delete;
    Deferral& operator=(const Deferral&) = delete;

   private:
    const Reporter* previous_;
  };
  /// Whether lines or events wait for emit_deferred().
  bool has_deferred() const noexcept { return has_deferred_.load(std::memory_order_acquire); }
  /// Emits what Deferrals kept, in order (supervisor thread).
  void emit_deferred() noexcept;

  /// Counts `n` jobs submitted (accepted or not).
  void count_submitted(std::size_t n) noexcept {
    submitted_.fetch_add(n, std::memory_order_relaxed);
  }
  /// Counts one job's outcome.
  void count(const JobResult& result) noexcept;
  void count_retry() noexcept { retries_.fetch_add(1, std::memory_order_relaxed); }
  std::uint64_t submitted() const noexcept { return submitted_.load(std::memory_order_relaxed); }
  /// Fills the counts of `stats`: submitted, succeeded, failed (and by kind), retries.
  void fill(PoolStats& stats) const noexcept;

 private:
  struct Deferred {
    LogLevel level;
    std::string line;
    std::optional<PoolEvent> event;
  };
  // On a thread inside a Deferral for this reporter: keeps the line and `event` (moved from) and
  // returns true. Otherwise, or without memory, false.
  bool defer(LogLevel level, const std::string& line,
             std::optional<PoolEvent>& event) const noexcept;

  const LogSink log_;
  const EventCallback on_event_;

  mutable std::mutex deferred_mutex_;
  mutable std::vector<Deferred> deferred_;
  mutable std::atomic<bool> has_deferred_{false};
  /// The reporter whose lines this thread defers (Deferral).
  static thread_local const Reporter* deferring_;

  std::atomic<std::uint64_t> submitted_{0}, succeeded_{0}, retries_{0};
  std::array<std::atomic<std::uint64_t>, error_kind_count> failed_by_kind_{};
};

}  // namespace procpool::detail
