// WorkerSecurity turned into what platform::spawn applies to a worker: its environment, limits,
// credentials and privileges.
#pragma once

#include <string>
#include <vector>

#include "platform/platform.hpp"
#include "procpool/options.hpp"

namespace procpool::detail {

/// The environment a worker gets, one "NAME=value" each, from the host's `host` entries: all of
/// them (inherit) or those `environment.allow` names (allow_list), then `environment.set` over
/// them. Pure; the order is the host's, then the added names in the order given.
std::vector<std::string> build_environment(const WorkerEnvironment& environment,
                                           const std::vector<std::string>& host);

/// Fills `request`'s environment and restrictions from `security`. Reads the host's environment
/// only when it has to change it (inherit with nothing to set leaves `request.environment` empty:
/// the child gets the host's own). Supervisor thread.
void apply_security(const WorkerSecurity& security, platform::SpawnRequest& request);

}  // namespace procpool::detail
