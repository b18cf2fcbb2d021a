// A worker's output (its stdout and stderr share one pipe), cut into lines for the log, with the
// last few kept for the error of a job it dies on. Bounded in every dimension, so that a worker
// flooding its output costs the supervisor thread little: past a rate, lines are counted rather
// than formatted and handed to the LogSink, and a line longer than max_line_bytes is cut.
// Supervisor thread only.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <vector>

namespace procpool::detail {

class WorkerOutput {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::size_t max_line_bytes = 4096;
  /// Lines logged per worker: a burst of log_burst, then log_lines_per_second.
  static constexpr double log_burst = 200;
  static constexpr double log_lines_per_second = 100;

  /// Keeps the last `tail_lines` lines (PoolOptions::stderr_tail_lines).
  explicit WorkerOutput(std::size_t tail_lines = 0) : tail_lines_(tail_lines) {}

  /// Takes `bytes` read at `now`; appends to `to_log` the lines to log, each preceded, when lines
  /// were dropped before it, by a line that says how many.
  void take(std::string_view bytes, Clock::time_point now, std::vector<std::string>& to_log);
  /// The output ended (or will be read no more): its last partial line, and how many lines were
  /// dropped since the last one logged.
  void finish(Clock::time_point now, std::vector<std::string>& to_log);
  /// All output so far has been read: appends to `to_log` how many lines were dropped since the
  /// last one logged, if any, so that a burst is accounted for when it ends.
  void report_dropped(std::vector<std::string>& to_log);
  /// The last lines, oldest first (all lines, logged or not).
  const std::deque<std::string>& tail() const noexcept { return tail_; }
  /// Lines not logged, over the worker's life.
  std::uint64_t dropped_total() const noexcept { return dropped_total_; }

 private:
  void end_line(Clock::time_point now, std::vector<std::string>& to_log);

  std::size_t tail_lines_;
  std::deque<std::string> tail_;
  std::string partial_;
  double tokens_ = log_burst;
  Clock::time_point refilled_at_{};
  std::uint64_t dropped_ = 0, dropped_total_ = 0;
};

}  // namespace procpool::detail
