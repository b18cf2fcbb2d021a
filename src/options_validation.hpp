// Checks PoolOptions before a pool starts, and fills in the defaults that depend on the machine.
#pragma once

#include "procpool/options.hpp"

namespace procpool::detail {

/// Returns `options` with defaults resolved (workers = 0 → hardware threads). Throws ConfigError
/// naming the first field that cannot work, with the values it accepts.
PoolOptions validate(PoolOptions options);

}  // namespace procpool::detail
