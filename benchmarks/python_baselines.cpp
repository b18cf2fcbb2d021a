#include "python_baselines.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <sstream>

namespace bench {

namespace {

// Measures in Python and prints one "metric rep value" line per repetition. Every pool has 2
// workers and is warmed up (its workers started) before timing.
constexpr const char* script = R"PY(
import multiprocessing as mp
import sys
import time
from concurrent.futures import ProcessPoolExecutor, wait


def noop(x=None):
    return x


def pct(values, p):
    values = sorted(values)
    rank = max(1, -(-len(values) * p // 100))
    return values[min(rank, len(values)) - 1]


def main():
    reps, n_lat, n_exec, n_map, n_rec, n_spawn = (int(a) for a in sys.argv[1:7])
    print("version 0 " + sys.version.split()[0], flush=True)
    for rep in range(reps):
        with ProcessPoolExecutor(max_workers=2) as ex:
            wait([ex.submit(noop, i) for i in range(200)])
            lat = []
            for _ in range(n_lat):
                t0 = time.perf_counter_ns()
                ex.submit(noop).result()
                lat.append(time.perf_counter_ns() - t0)
            print("executor_submit_result_p50_us %d %.3f" % (rep, pct(lat, 50) / 1e3))
            print("executor_submit_result_p99_us %d %.3f" % (rep, pct(lat, 99) / 1e3))
            print("executor_submit_result_per_s %d %.1f" % (rep, n_lat / (sum(lat) / 1e9)))
            t0 = time.perf_counter_ns()
            wait([ex.submit(noop, i) for i in range(n_exec)])
            print("executor_pipelined_per_s %d %.1f" % (rep, n_exec / ((time.perf_counter_ns() - t0) / 1e9)))
        with mp.Pool(2) as pool:
            pool.map(noop, range(200), chunksize=1)
            t0 = time.perf_counter_ns()
            pool.map(noop, range(n_map), chunksize=1)
            print("pool_map_chunksize1_per_s %d %.1f" % (rep, n_map / ((time.perf_counter_ns() - t0) / 1e9)))
        contexts = [("forkserver", n_rec)]
        if n_spawn > 0:
            contexts.append(("spawn", n_spawn))
        for ctx, n in contexts:
            with ProcessPoolExecutor(max_workers=2, mp_context=mp.get_context(ctx),
                                     max_tasks_per_child=1) as ex:
                wait([ex.submit(noop, i) for i in range(4)])
                t0 = time.perf_counter_ns()
                wait([ex.submit(noop, i) for i in range(n)])
                print("executor_max_tasks_per_child1_%s_per_s %d %.1f"
                      % (ctx, rep, n / ((time.perf_counter_ns() - t0) / 1e9)))
        with mp.get_context("fork").Pool(2, maxtasksperchild=1) as pool:
            pool.map(noop, range(4), chunksize=1)
            t0 = time.perf_counter_ns()
            pool.map(noop, range(n_rec), chunksize=1)
            print("pool_maxtasksperchild1_fork_per_s %d %.1f"
                  % (rep, n_rec / ((time.perf_counter_ns() - t0) / 1e9)))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
)PY";

}  // namespace

PythonResults run_python_baselines(const PythonSizes& sizes) {
  PythonResults results;
  if (std::system("command -v python3 >/dev/null 2>&1") != 0) {
    results.note = "python3 not found: Python baselines skipped";
    return results;
  }
  char path[] = "/tmp/procpool-bench-XXXXXX.py";
  int fd = mkstemps(path, 3);
  if (fd < 0) {
    results.note = "cannot create a temporary file for the Python script";
    return results;
  }
  std::string text = script;
  bool written = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  close(fd);
  if (!written) {
    unlink(path);
    results.note = "cannot write the Python script";
    return results;
  }
  std::string command = fmt::format("python3 {} {} {} {} {} {} {}", path, sizes.reps,
                                    sizes.latency_tasks, sizes.executor_tasks, sizes.map_tasks,
                                    sizes.recycle_tasks, sizes.spawn_recycle_tasks);
  FILE* out = popen(command.c_str(), "r");
  if (out == nullptr) {
    unlink(path);
    results.note = "popen(python3) failed";
    return results;
  }
  char line[512];
  while (std::fgets(line, sizeof line, out) != nullptr) {
    std::istringstream fields(line);
    std::string metric, value;
    int rep = 0;
    if (!(fields >> metric >> rep >> value)) continue;
    if (metric == "version") {
      results.version = value;
      continue;
    }
    try {
      results.samples[metric].push_back(std::stod(value));
    } catch (const std::exception&) {
    }
  }
  int status = pclose(out);
  unlink(path);
  if (status != 0) {
    results.note = fmt::format("python3 exited with status {}: results may be partial", status);
  }
  results.ran = !results.samples.empty();
  if (!results.ran && results.note.empty()) results.note = "the Python script printed nothing";
  return results;
}

}  // namespace bench
