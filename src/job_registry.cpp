#include "procpool/job_registry.hpp"

#include "channel/layout.hpp"

namespace procpool {

void JobRegistry::add(std::string name, JobHandler handler) {
  if (name.empty()) throw ConfigError("job name", "must not be empty");
  if (name.size() > detail::max_job_name_bytes) {
    throw ConfigError("job name", "'" + name.substr(0, 32) + "...' is " +
                                      std::to_string(name.size()) + " bytes; the limit is " +
                                      std::to_string(detail::max_job_name_bytes));
  }
  if (!handler) throw ConfigError("job handler", "the handler for '" + name + "' is empty");
  if (handlers_.contains(name)) {
    throw ConfigError("job name", "'" + name + "' is already registered");
  }
  handlers_.emplace(std::move(name), std::move(handler));
}

const JobHandler* JobRegistry::find(std::string_view name) const noexcept {
  auto it = handlers_.find(name);
  return it == handlers_.end() ? nullptr : &it->second;
}

std::vector<std::string> JobRegistry::names() const {
  std::vector<std::string> names;
  names.reserve(handlers_.size());
  for (const auto& [name, handler] : handlers_)
    names.push_back(name);
  return names;
}

}  // namespace procpool
