// procpool: run jobs in recyclable worker processes, so what their native code leaks dies with
// them.
//
// The umbrella header; each part also has its own.
#pragma once

#include "procpool/codec.hpp"
#include "procpool/dispatch_policy.hpp"
#include "procpool/error.hpp"
#include "procpool/events.hpp"
#include "procpool/future.hpp"
#include "procpool/job_registry.hpp"
#include "procpool/lent_buffer.hpp"
#include "procpool/memory_options.hpp"
#include "procpool/options.hpp"
#include "procpool/pool.hpp"
#include "procpool/recycle_policy.hpp"
#include "procpool/result.hpp"
#include "procpool/security.hpp"
#include "procpool/stats.hpp"
#include "procpool/stats_format.hpp"
#include "procpool/version.hpp"
#include "procpool/worker.hpp"
#include "procpool/worker_state.hpp"

/// \namespace procpool
/// Everything procpool offers a host: Pool, JobRegistry and the worker entry points, options,
/// outcomes and stats. (procpool::detail, in the library's sources, is internal.)
