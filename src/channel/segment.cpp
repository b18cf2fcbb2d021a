#include "channel/segment.hpp"

#include <new>
#include <stdexcept>
#include <string>
#include <system_error>

#include "platform/platform.hpp"

namespace procpool::detail {

struct Segment::Impl {
  // Kept here, not re-read from the header: the peer can write the header.
  std::uint64_t ring_bytes = 0;
  SharedMapping region;
  platform::UniqueFd descriptor;
};

Segment::Segment() = default;
Segment::Segment(Segment&&) noexcept = default;
Segment& Segment::operator=(Segment&&) noexcept = default;
Segment::~Segment() = default;

Segment Segment::create(std::size_t ring_bytes, std::size_t max_payload_bytes,
                        std::size_t max_result_bytes, int host_pid) {
  Segment segment;
  segment.impl_ = std::make_unique<Impl>();
  Impl& impl = *segment.impl_;
  std::size_t bytes = segment_bytes_for(ring_bytes);
  try {
    // Nothing is allocated up front: pages come from memory as they are first written (a ring's
    // pages as far as its records reach), not from /dev/shm's size limit, so there is no "full
    // /dev/shm" to meet later as SIGBUS. Allocating whole rings up front (fallocate) was the
    // slowest part of a spawn on the supervisor's side, and freeing them at the exit.
    impl.descriptor = platform::make_shared_memory(bytes, "procpool-segment");
    impl.region =
        SharedMapping::map(impl.descriptor.get(), bytes, SharedMapping::Access::read_write);
  } catch (const std::system_error& e) {
    throw std::runtime_error("cannot create a shared memory segment of " + std::to_string(bytes) +
                             " bytes: " + e.what());
  }
  impl.ring_bytes = ring_bytes;
  auto* header = new (impl.region.data()) SegmentHeader();
  header->segment_bytes = bytes;
  header->ring_bytes = ring_bytes;
  header->max_payload_bytes = max_payload_bytes;
  header->max_result_bytes = max_result_bytes;
  header->host_pid = host_pid;
  return segment;
}

Segment Segment::attach(platform::UniqueFd descriptor) {
  Segment segment;
  segment.impl_ = std::make_unique<Impl>();
  Impl& impl = *segment.impl_;
  try {
    // Size 0: the whole object, whatever its size; the header says what it should be.
    impl.region = SharedMapping::map(descriptor.get(), 0, SharedMapping::Access::read_write);
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(std::string(e.what()) +
                             " (was this process started by a procpool::Pool?)");
  }
  // `descriptor` closes here: the worker keeps only the mapping, and a job's children inherit
  // neither.
  if (impl.region.size() < sizeof(SegmentHeader)) {
    throw std::runtime_error("the shared memory segment is too small");
  }
  auto* header = reinterpret_cast<SegmentHeader*>(impl.region.data());
  if (header->magic != segment_magic || header->version != protocol_version) {
    throw std::runtime_error(
        "the shared memory segment has an unknown format (host and worker built from different "
        "procpool versions?)");
  }
  std::uint64_t rb = header->ring_bytes;
  if (rb == 0 || (rb & (rb - 1)) != 0 || header->segment_bytes != segment_bytes_for(rb) ||
      impl.region.size() < header->segment_bytes) {
    throw std::runtime_error("the shared memory segment has an inconsistent header");
  }
  impl.ring_bytes = rb;
  return segment;
}

int Segment::descriptor() const noexcept {
  return impl_->descriptor.get();
}

void Segment::close_descriptor() noexcept {
  impl_->descriptor.reset();
}

SegmentHeader& Segment::header() noexcept {
  return *reinterpret_cast<SegmentHeader*>(impl_->region.data());
}

std::byte* Segment::request_data() noexcept {
  return impl_->region.data() + segment_header_bytes;
}

std::byte* Segment::response_data() noexcept {
  return request_data() + ring_bytes();
}

std::uint64_t Segment::ring_bytes() const noexcept {
  return impl_->ring_bytes;
}

}  // namespace procpool::detail
