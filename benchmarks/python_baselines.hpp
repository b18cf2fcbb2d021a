// Python baselines: concurrent.futures.ProcessPoolExecutor and multiprocessing.Pool, 2 workers.
#pragma once

#include <cstddef>
#include <map>
#include <string>
#include <vector>

namespace bench {

struct PythonResults {
  /// False when python3 is absent or the script failed; `note` says why.
  bool ran = false;
  std::string note;
  std::string version;
  /// Per metric, one value per repetition (measured in Python, printed as "metric rep value").
  std::map<std::string, std::vector<double>> samples;
};

struct PythonSizes {
  std::size_t reps = 5;
  std::size_t latency_tasks = 2000;
  std::size_t executor_tasks = 10000;
  std::size_t map_tasks = 50000;
  std::size_t recycle_tasks = 100;
  /// Tasks for the spawn start method, which is far slower; 0 skips it.
  std::size_t spawn_recycle_tasks = 20;
};

/// Runs the Python baselines with python3 (an inline script written to a temporary file).
PythonResults run_python_baselines(const PythonSizes& sizes);

}  // namespace bench
