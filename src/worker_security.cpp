#include "worker_security.hpp"

#include <algorithm>
#include <string_view>

namespace procpool::detail {

namespace {

std::string_view name_of(std::string_view entry) {
  return entry.substr(0, entry.find('='));
}

bool allowed(std::string_view name, const std::vector<std::string>& allow) {
  return std::any_of(allow.begin(), allow.end(), [&](const std::string& pattern) {
    if (!pattern.empty() && pattern.back() == '*') {
      return name.starts_with(std::string_view(pattern).substr(0, pattern.size() - 1));
    }
    return name == pattern;
  });
}

}  // namespace

std::vector<std::string> build_environment(const WorkerEnvironment& environment,
                                           const std::vector<std::string>& host) {
  std::vector<std::string> result;
  for (const std::string& entry : host) {
    std::string_view name = name_of(entry);
    if (environment.mode == EnvironmentMode::allow_list && !allowed(name, environment.allow)) {
      continue;
    }
    bool overridden = std::any_of(environment.set.begin(), environment.set.end(),
                                  [&](const auto& variable) { return variable.first == name; });
    if (!overridden) result.push_back(entry);
  }
  for (const auto& [name, value] : environment.set)
    result.push_back(name + "=" + value);
  return result;
}

void apply_security(const WorkerSecurity& security, platform::SpawnRequest& request) {
  const WorkerEnvironment& environment = security.environment;
  if (environment.mode != EnvironmentMode::inherit || !environment.set.empty()) {
    request.environment = build_environment(environment, platform::host_environment());
  }
  if (security.max_open_files != 0) request.max_open_files = security.max_open_files;
  request.core_dump_limit = security.core_dump_limit;
  if (security.run_as) {
    request.credentials =
        platform::SpawnRequest::Credentials{security.run_as->uid, security.run_as->gid};
  }
  request.no_new_privileges = security.no_new_privileges;
}

}  // namespace procpool::detail
