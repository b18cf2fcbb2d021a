#include "channel/segment.hpp"

#include <boost/interprocess/mapped_region.hpp>
#include <boost/interprocess/permissions.hpp>
#include <boost/interprocess/shared_memory_object.hpp>
#include <charconv>
#include <new>
#include <random>
#include <stdexcept>
#include <system_error>

#include "platform/platform.hpp"

namespace procpool::detail {

namespace bip = boost::interprocess;

struct Segment::Impl {
  std::string name;
  // Kept here, not re-read from the header: the peer can write the header.
  std::uint64_t ring_bytes = 0;
  bip::mapped_region region;
  bool linked = false;
};

Segment::Segment() = default;
Segment::Segment(Segment&&) noexcept = default;
Segment& Segment::operator=(Segment&&) noexcept = default;
Segment::~Segment() {
  unlink();
}

namespace {

std::string fresh_name(int host_pid) {
  // 128 random bits from the OS: the name cannot be guessed by another local user before the
  // worker attaches (and the object is 0600 and created exclusively anyway).
  std::random_device random;
  char buffer[64];
  int n = std::snprintf(buffer, sizeof buffer, "%s%d-%08x%08x%08x%08x", segment_name_prefix,
                        host_pid, random(), random(), random(), random());
  return std::string(buffer, static_cast<std::size_t>(n));
}

}  // namespace

Segment Segment::create(std::size_t ring_bytes, std::size_t max_payload_bytes,
                        std::size_t max_result_bytes, int host_pid, std::optional<Owner> owner) {
  Segment segment;
  segment.impl_ = std::make_unique<Impl>();
  Impl& impl = *segment.impl_;
  std::size_t bytes = segment_bytes_for(ring_bytes);
  try {
    impl.name = fresh_name(host_pid);
    bip::permissions owner_only(0600);
    bip::shared_memory_object object(bip::create_only, impl.name.c_str(), bip::read_write,
                                     owner_only);
    impl.linked = true;
    if (owner) {
      // Through the descriptor, not the name: it is the object this process created.
      platform::change_owner(object.get_mapping_handle().handle, owner->uid, owner->gid);
    }
    // Only what the host writes is allocated now: the header (control blocks) and the request
    // ring, so a full /dev/shm fails this spawn rather than the host with SIGBUS later. The
    // response ring is the worker's to write (a SIGBUS there is the worker's crash), and reading
    // its unallocated pages gives zeros. Allocating all of it (as Boost's truncate does) was the
    // slowest part of a spawn on the supervisor's side.
    platform::size_shared_memory(object.get_mapping_handle().handle, bytes,
                                 segment_header_bytes + ring_bytes);
    impl.region = bip::mapped_region(object, bip::read_write, 0, bytes);
  } catch (const bip::interprocess_exception& e) {
    throw std::runtime_error("cannot create shared memory segment '" + impl.name + "' of " +
                             std::to_string(bytes) + " bytes: " + e.what());
  } catch (const std::system_error& e) {
    // fchown to the worker's user, or sizing and allocating (ENOSPC: /dev/shm is full).
    throw std::runtime_error("cannot set up shared memory segment '" + impl.name + "' of " +
                             std::to_string(bytes) + " bytes: " + e.what());
  }
  impl.ring_bytes = ring_bytes;
  auto* header = new (impl.region.get_address()) SegmentHeader();
  header->segment_bytes = bytes;
  header->ring_bytes = ring_bytes;
  header->max_payload_bytes = max_payload_bytes;
  header->max_result_bytes = max_result_bytes;
  header->host_pid = host_pid;
  return segment;
}

Segment Segment::open(const std::string& name) {
  Segment segment;
  segment.impl_ = std::make_unique<Impl>();
  Impl& impl = *segment.impl_;
  impl.name = name;
  try {
    bip::shared_memory_object object(bip::open_only, name.c_str(), bip::read_write);
    impl.region = bip::mapped_region(object, bip::read_write);
    // `object` closes its descriptor here: the worker keeps only the mapping.
  } catch (const bip::interprocess_exception& e) {
    throw std::runtime_error("cannot open shared memory segment '" + name + "': " + e.what());
  }
  if (impl.region.get_size() < sizeof(SegmentHeader)) {
    throw std::runtime_error("shared memory segment '" + name + "' is too small");
  }
  auto* header = static_cast<SegmentHeader*>(impl.region.get_address());
  if (header->magic != segment_magic || header->version != protocol_version) {
    throw std::runtime_error("shared memory segment '" + name +
                             "' has an unknown format (host and worker built from different "
                             "procpool versions?)");
  }
  std::uint64_t rb = header->ring_bytes;
  if (rb == 0 || (rb & (rb - 1)) != 0 || header->segment_bytes != segment_bytes_for(rb) ||
      impl.region.get_size() < header->segment_bytes) {
    throw std::runtime_error("shared memory segment '" + name + "' has an inconsistent header");
  }
  impl.ring_bytes = rb;
  return segment;
}

void Segment::unlink() noexcept {
  if (impl_ && impl_->linked) {
    bip::shared_memory_object::remove(impl_->name.c_str());
    impl_->linked = false;
  }
}

const std::string& Segment::name() const noexcept {
  return impl_->name;
}

SegmentHeader& Segment::header() noexcept {
  return *static_cast<SegmentHeader*>(impl_->region.get_address());
}

std::byte* Segment::request_data() noexcept {
  return static_cast<std::byte*>(impl_->region.get_address()) + segment_header_bytes;
}

std::byte* Segment::response_data() noexcept {
  return request_data() + ring_bytes();
}

std::uint64_t Segment::ring_bytes() const noexcept {
  return impl_->ring_bytes;
}

std::size_t Segment::remove_stale() {
  std::size_t removed = 0;
  for (const std::string& name : platform::list_shared_memory(segment_name_prefix)) {
    // "procpool-<pid>-<random>": the pid of the host that created it.
    std::string_view rest =
        std::string_view(name).substr(std::string_view(segment_name_prefix).size());
    int pid = 0;
    auto [end, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), pid);
    if (ec != std::errc() || end == rest.data() + rest.size() || *end != '-' || pid <= 0) continue;
    if (platform::process_exists(pid)) continue;
    if (bip::shared_memory_object::remove(name.c_str())) ++removed;
  }
  return removed;
}

}  // namespace procpool::detail
