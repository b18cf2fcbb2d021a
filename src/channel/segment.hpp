// A worker's shared-memory segment: created by the supervisor as an anonymous object (memfd),
// handed to the worker as an inherited descriptor, mapped by both. It never has a name, so nothing
// is left in /dev/shm whatever kills the host or the worker, and no other process can open it
// without the right to ptrace one that holds it. Boost.Interprocess does the mapping; nothing of
// it leaks past here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "channel/layout.hpp"
#include "channel/ring.hpp"
#include "channel/shared_mapping.hpp"
#include "platform/platform.hpp"

namespace procpool::detail {

class Segment {
 public:
  Segment();
  Segment(Segment&&) noexcept;
  Segment& operator=(Segment&&) noexcept;
  ~Segment();  // unmaps (and closes the descriptor if still open)

  /// Creates a new segment sized for two rings of `ring_bytes` (mode 0600, close-on-exec
  /// descriptor), maps it and writes the header. Throws std::runtime_error naming the cause.
  static Segment create(std::size_t ring_bytes, std::size_t max_payload_bytes,
                        std::size_t max_result_bytes, int host_pid);

  /// Worker side: maps the segment open on `descriptor`, closes the descriptor and checks the
  /// header. Throws std::runtime_error saying what is wrong.
  static Segment attach(platform::UniqueFd descriptor);

  /// The creator's descriptor, to pass to the worker (platform::SpawnRequest::segment_fd); -1 once
  /// closed.
  int descriptor() const noexcept;
  /// Closes the creator's descriptor once the worker has its own copy; the mapping stays.
  void close_descriptor() noexcept;

  SegmentHeader& header() noexcept;
  std::byte* request_data() noexcept;
  std::byte* response_data() noexcept;
  std::uint64_t ring_bytes() const noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace procpool::detail
