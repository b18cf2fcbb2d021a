#include "config.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace bench {

namespace {

void usage() {
  std::fprintf(
      stderr,
      "usage: procpool-bench [--quick] [--json PATH] [--reps N] [--no-python] [--only STEP,...]\n"
      "  --quick      small sizes, fewer repetitions (CI smoke use, 1-2 minutes)\n"
      "  --json PATH  where to write the results (default "
      "benchmarks/results/latest.json)\n"
      "  --reps N     repetitions per figure (default 5, 3 with --quick)\n"
      "  --no-python  skip the Python baselines\n"
      "  --only STEP,...  run only the steps whose name contains one of the STEPs\n"
      "               (baselines, python, rtt, blocking, pipelined, syscalls, payload (its\n"
      "               last row alone: zero_copy), recycle, memory_caps, max_jobs1, leaks, idle,\n"
      "               spin); for profiling one measurement\n");
}

}  // namespace

bool Config::runs(std::string_view name) const {
  if (only.empty()) return true;
  // A comma-separated list: run a step if any entry names part of it.
  for (std::size_t at = 0; at <= only.size();) {
    std::size_t comma = std::min(only.find(',', at), only.size());
    std::string_view entry = std::string_view(only).substr(at, comma - at);
    if (!entry.empty() && name.find(entry) != std::string_view::npos) return true;
    at = comma + 1;
  }
  return false;
}

Config quick_config() {
  Config c;
  c.quick = true;
  c.reps = 3;
  c.pingpong_n = 1'000;
  c.pingpong_warmup = 100;
  c.memcpy_samples = 5;
  c.spawn_samples = 10;
  c.rtt_n = 1'000;
  c.rtt_warmup = 100;
  c.blocking_n = 2'000;
  c.pipelined_n = 20'000;
  c.syscall_small_n = 2'000;
  c.syscall_big_n = 20'000;
  c.payload_samples = 1;
  c.recycles_per_rep = 10;
  c.big_host = false;
  c.max_jobs1_n = 60;
  c.leak_warmup = 20'000;
  c.leak_jobs = 20'000;
  c.leak_recycles = 100;
  c.idle_reps = 1;
  c.idle_seconds = 2;
  c.spin_blocking_n = 2'000;
  c.spin_busy_n = 100;
  c.py = PythonSizes{1, 200, 2'000, 5'000, 40, 0};
  return c;
}

std::optional<Config> parse_command_line(int argc, char** argv, int& exit_code) {
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) quick = true;
  }
  Config cfg = quick ? quick_config() : Config{};
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--quick") continue;
    if (a == "--no-python") {
      cfg.python = false;
    } else if (a == "--json" && i + 1 < argc) {
      cfg.json_path = argv[++i];
    } else if (a == "--only" && i + 1 < argc) {
      cfg.only = argv[++i];
    } else if (a == "--reps" && i + 1 < argc) {
      cfg.reps = std::max(1, std::atoi(argv[++i]));
      cfg.py.reps = cfg.reps;
    } else {
      usage();
      exit_code = a == "--help" || a == "-h" ? 0 : 2;
      return std::nullopt;
    }
  }
  return cfg;
}

}  // namespace bench
