// This process's mappings, read from /proc/self/maps: what tests and test jobs check a worker's or
// the host's view of shared memory with.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace procpool::test {

/// One line of /proc/self/maps: a mapping of this process.
struct Mapping {
  std::uintptr_t begin = 0;
  std::uintptr_t end = 0;
  std::string permissions;  ///< "rw-s", "r--s", "---s"...
  std::string device;       ///< "00:01": with the inode, the file mapped
  std::uint64_t inode = 0;
  std::string path;  ///< "/memfd:procpool-lent (deleted)"; empty for anonymous memory
  bool readable() const { return permissions.size() > 1 && permissions[0] == 'r'; }
  bool writable() const { return permissions.size() > 1 && permissions[1] == 'w'; }
};
/// This process's mappings now.
std::vector<Mapping> own_mappings();
/// The mapping of this process that holds `address`; throws std::runtime_error if none does.
Mapping own_mapping_of(const void* address);

}  // namespace procpool::test
