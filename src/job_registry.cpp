#include "procpool/job_registry.hpp"

#include <algorithm>

#include "channel/layout.hpp"

namespace procpool {

void JobRegistry::check_new_name(const std::string& name, bool has_handler) const {
  if (name.empty()) throw ConfigError("job name", "must not be empty");
  if (name.size() > detail::max_job_name_bytes) {
    throw ConfigError("job name", "'" + name.substr(0, 32) + "...' is " +
                                      std::to_string(name.size()) + " bytes; the limit is " +
                                      std::to_string(detail::max_job_name_bytes));
  }
  if (!has_handler) throw ConfigError("job handler", "the handler for '" + name + "' is empty");
  if (handlers_.contains(name) || owning_handlers_.contains(name) ||
      in_place_handlers_.contains(name)) {
    throw ConfigError("job name", "'" + name + "' is already registered");
  }
}

void JobRegistry::add(std::string name, JobHandler handler) {
  check_new_name(name, static_cast<bool>(handler));
  handlers_.emplace(std::move(name), std::move(handler));
}

void JobRegistry::add_owning(std::string name, OwningJobHandler handler) {
  check_new_name(name, static_cast<bool>(handler));
  owning_handlers_.emplace(std::move(name), std::move(handler));
}

void JobRegistry::add_in_place(std::string name, InPlaceHandler handler) {
  check_new_name(name, static_cast<bool>(handler));
  in_place_handlers_.emplace(std::move(name), std::move(handler));
}

const JobHandler* JobRegistry::find(std::string_view name) const noexcept {
  auto it = handlers_.find(name);
  return it == handlers_.end() ? nullptr : &it->second;
}

const OwningJobHandler* JobRegistry::find_owning(std::string_view name) const noexcept {
  auto it = owning_handlers_.find(name);
  return it == owning_handlers_.end() ? nullptr : &it->second;
}

const InPlaceHandler* JobRegistry::find_in_place(std::string_view name) const noexcept {
  auto it = in_place_handlers_.find(name);
  return it == in_place_handlers_.end() ? nullptr : &it->second;
}

std::vector<std::string> JobRegistry::names() const {
  std::vector<std::string> names;
  names.reserve(handlers_.size() + owning_handlers_.size() + in_place_handlers_.size());
  for (const auto& [name, handler] : handlers_)
    names.push_back(name);
  for (const auto& [name, handler] : owning_handlers_)
    names.push_back(name);
  for (const auto& [name, handler] : in_place_handlers_)
    names.push_back(name);
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace procpool
