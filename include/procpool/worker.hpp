// The worker side: turning a process into a procpool worker.
#pragma once

#include <optional>

#include "procpool/export.hpp"
#include "procpool/job_registry.hpp"

namespace procpool {

/// Call at the very top of main(), before starting threads or touching global state:
///
///   if (auto rc = procpool::run_worker_if_requested(argc, argv, jobs)) return *rc;
///
/// If the process was launched by a Pool as a worker (its argv carries procpool's reserved
/// `--procpool-worker` arguments), this attaches to the pool's shared memory, runs jobs from
/// `registry` until the pool tells it to stop or goes away, and returns the exit code main() should
/// return. Otherwise it returns std::nullopt at once and touches nothing.
///
/// Errors inside a worker (a handler that throws, an unknown job name) are reported to the host as
/// job outcomes. If attaching fails the worker writes the reason to stderr and returns non-zero.
/// Not reentrant; call it once, from the main thread.
PROCPOOL_API std::optional<int> run_worker_if_requested(int argc, char** argv,
                                                        const JobRegistry& registry);

/// The main() of a dedicated worker executable (PoolOptions::worker_command): like
/// run_worker_if_requested, but a process started without procpool's arguments prints a usage
/// message to stderr and returns 2.
PROCPOOL_API int worker_main(int argc, char** argv, const JobRegistry& registry);

}  // namespace procpool
