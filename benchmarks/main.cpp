// procpool-bench: procpool measured side by side with baselines run in the same process.
//
//   procpool-bench [--quick] [--json PATH] [--reps N] [--no-python] [--only STEP,...]
//
// Prints a table (figure, baseline, ratio, target, met/missed) and writes it as JSON. Every figure
// is the median over repetitions; every ratio is against a baseline measured in this same run.
#include <fmt/format.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <optional>
#include <procpool/procpool.hpp>
#include <string_view>

#include "baselines.hpp"
#include "bench_jobs.hpp"
#include "bench_util.hpp"
#include "config.hpp"
#include "measurements.hpp"
#include "report.hpp"

namespace {

struct Step {
  std::string_view name;  // what --only matches
  void (*run)(const bench::Config&, bench::Report&);
};

// In the order they run and their rows are printed. Baselines first, while this process has one
// thread (they fork); "payload_zero_copy" is part of `payload`, and alone with --only zero_copy.
constexpr Step steps[] = {
    {"baselines", bench::measure_native_baselines},
    {"python", bench::measure_python_baselines},
    {"rtt", bench::measure_round_trips},
    {"blocking", bench::measure_blocking},
    {"pipelined", bench::measure_pipelined},
    {"syscalls", bench::measure_syscalls},
    {"payload", bench::measure_payloads},
    {"payload_zero_copy", bench::measure_zero_copy},
    {"recycle", bench::measure_recycles},
    {"memory_caps", bench::measure_memory_caps},
    {"max_jobs1", bench::measure_max_jobs1},
    {"leaks", bench::measure_leaks},
    {"idle", bench::measure_idle},
    {"spin", bench::measure_spin},
};

}  // namespace

int main(int argc, char** argv) {
  // This binary is its own worker.
  procpool::JobRegistry jobs = bench::make_bench_registry();
  if (auto rc = procpool::run_worker_if_requested(argc, argv, jobs)) return *rc;
  if (argc > 1 && std::strcmp(argv[1], "--bench-spawn-child") == 0) {
    return bench::spawn_child_main();
  }

  int exit_code = 0;
  std::optional<bench::Config> cfg = bench::parse_command_line(argc, argv, exit_code);
  if (!cfg) return exit_code;

  try {
    std::int64_t start = bench::now_ns();
    bench::Report report;
    for (const Step& step : steps) {
      if (cfg->runs(step.name)) step.run(*cfg, report);
    }
    double elapsed = static_cast<double>(bench::now_ns() - start) / 1e9;
    bench::print_table(report, *cfg);
    fmt::print("elapsed: {:.1f} s\n", elapsed);
    bench::write_json(report, *cfg, elapsed);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "procpool-bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
