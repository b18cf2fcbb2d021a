// Stats rendered for machines: JSON for APIs and dashboards, Prometheus text exposition for
// scrapers.
#pragma once

#include <string>

#include "procpool/export.hpp"
#include "procpool/stats.hpp"

namespace procpool {

/// The snapshot as one JSON object: pool figures, "workers" (an array), "jobs" (per name),
/// "failed_by_kind" and "recycles_by_reason" (objects keyed by the enums' to_string names).
/// Durations are in milliseconds, sizes in bytes. Never throws except std::bad_alloc.
PROCPOOL_API std::string to_json(const PoolStats& stats);

/// The snapshot in Prometheus text exposition format 0.0.4: metric names prefixed "procpool_",
/// labels `worker`, `pid`, `reason`, `kind`, `job`, each metric with # HELP and # TYPE.
/// Never throws except std::bad_alloc.
PROCPOOL_API std::string to_prometheus(const PoolStats& stats);

}  // namespace procpool
