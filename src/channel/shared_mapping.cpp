#include "channel/shared_mapping.hpp"

#include <boost/interprocess/mapped_region.hpp>
#include <stdexcept>
#include <string>

#include "platform/platform.hpp"

namespace procpool::detail {

namespace bip = boost::interprocess;

namespace {

// What Boost.Interprocess maps: an open descriptor.
struct DescriptorMapping {
  int fd;
  bip::mapping_handle_t get_mapping_handle() const noexcept {
    bip::mapping_handle_t handle;
    handle.handle = fd;
    handle.is_xsi = false;
    return handle;
  }
};

}  // namespace

struct SharedMapping::Impl {
  bip::mapped_region region;
};

SharedMapping::SharedMapping() noexcept = default;
SharedMapping::SharedMapping(SharedMapping&&) noexcept = default;
SharedMapping& SharedMapping::operator=(SharedMapping&&) noexcept = default;
SharedMapping::~SharedMapping() = default;

SharedMapping SharedMapping::map(int fd, std::size_t bytes, Access access, bool populate) {
  SharedMapping mapping;
  mapping.impl_ = std::make_unique<Impl>();
  try {
    mapping.impl_->region = bip::mapped_region(
        DescriptorMapping{fd}, access == Access::read_only ? bip::read_only : bip::read_write, 0,
        bytes, nullptr, populate ? platform::map_populate_option() : bip::default_map_options);
  } catch (const bip::interprocess_exception& e) {
    throw std::runtime_error("cannot map " + std::to_string(bytes) +
                             " bytes of shared memory on descriptor " + std::to_string(fd) + ": " +
                             e.what());
  }
  return mapping;
}

std::byte* SharedMapping::data() const noexcept {
  return impl_ ? static_cast<std::byte*>(impl_->region.get_address()) : nullptr;
}

std::size_t SharedMapping::size() const noexcept {
  return impl_ ? impl_->region.get_size() : 0;
}

}  // namespace procpool::detail
