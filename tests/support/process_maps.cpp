#include "process_maps.hpp"

#include <fstream>
#include <sstream>
#include <stdexcept>

namespace procpool::test {

std::vector<Mapping> own_mappings() {
  std::vector<Mapping> mappings;
  std::ifstream maps("/proc/self/maps");
  for (std::string line; std::getline(maps, line);) {
    std::istringstream fields(line);
    Mapping m;
    std::string range, offset;
    fields >> range >> m.permissions >> offset >> m.device >> m.inode;
    std::getline(fields >> std::ws, m.path);
    const auto dash = range.find('-');
    m.begin = static_cast<std::uintptr_t>(std::stoull(range.substr(0, dash), nullptr, 16));
    m.end = static_cast<std::uintptr_t>(std::stoull(range.substr(dash + 1), nullptr, 16));
    mappings.push_back(std::move(m));
  }
  return mappings;
}

Mapping own_mapping_of(const void* address) {
  const auto at = reinterpret_cast<std::uintptr_t>(address);
  for (Mapping& m : own_mappings()) {
    if (m.begin <= at && at < m.end) return m;
  }
  throw std::runtime_error("no mapping of this process holds the address");
}

}  // namespace procpool::test
