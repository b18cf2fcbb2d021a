// procpool-bench's configuration: the sizes of every measurement, and the command line that picks
// them (full or --quick) and which steps run.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "python_baselines.hpp"

namespace bench {

struct Config {
  bool quick = false;
  bool python = true;
  std::string json_path = "benchmarks/results/latest.json";
  // Runs only the steps whose name contains this (for profiling one measurement); empty: all.
  std::string only;
  std::size_t reps = 5;
  std::size_t pingpong_n = 10'000;
  std::size_t pingpong_warmup = 1'000;
  std::size_t memcpy_samples = 21;
  std::size_t spawn_samples = 100;
  std::size_t rtt_n = 10'000;
  std::size_t rtt_warmup = 1'000;
  std::size_t blocking_n = 20'000;
  std::size_t pipelined_n = 100'000;
  std::size_t syscall_small_n = 10'000;
  std::size_t syscall_big_n = 100'000;
  std::size_t payload_samples = 3;
  std::size_t recycles_per_rep = 100;
  bool big_host = true;
  std::size_t max_jobs1_n = 400;
  // One batch of the measured run's size: it sets the allocator's high-water mark (a 100,000-job
  // queue of jobs and outcomes), so what grows afterwards is what a per-job leak would show.
  std::size_t leak_warmup = 100'000;
  std::size_t leak_jobs = 1'000'000;
  std::size_t leak_recycles = 10'000;
  std::size_t idle_reps = 3;
  double idle_seconds = 10;
  std::size_t spin_blocking_n = 20'000;  // per caller
  std::size_t spin_busy_n = 1'000;       // per caller, 200 us of CPU each
  PythonSizes py;

  /// Whether the step `name` runs: always without --only, else if one of the comma-separated
  /// entries of `only` is part of its name.
  bool runs(std::string_view name) const;
};

/// The sizes of --quick: small, fewer repetitions (CI smoke use, 1-2 minutes).
Config quick_config();

/// The configuration `argv` asks for. Empty when it asks for no run: the usage is then printed to
/// stderr and `exit_code` says how to exit (0 for --help or -h, 2 for anything not understood).
std::optional<Config> parse_command_line(int argc, char** argv, int& exit_code);

}  // namespace bench
