// A worker's shared-memory segment: created by the supervisor, opened by the worker, unlinked as
// soon as both have it mapped. Boost.Interprocess does the mapping; nothing of it leaks past here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "channel/layout.hpp"
#include "channel/ring.hpp"

namespace procpool::detail {

class Segment {
 public:
  Segment();
  Segment(Segment&&) noexcept;
  Segment& operator=(Segment&&) noexcept;
  ~Segment();  // unmaps; unlinks the name if still linked

  /// The user and group a segment is handed to, for a worker that runs as another user.
  struct Owner {
    std::uint32_t uid = 0;
    std::uint32_t gid = 0;
  };

  /// Creates a new segment under a fresh unguessable name (exclusive create, mode 0600), sized for
  /// two rings of `ring_bytes`, and writes the header. With `owner`, the object is then given to
  /// that user (still 0600: only that user and root can open it), before it has any content.
  /// Throws std::runtime_error naming the cause.
  static Segment create(std::size_t ring_bytes, std::size_t max_payload_bytes,
                        std::size_t max_result_bytes, int host_pid,
                        std::optional<Owner> owner = std::nullopt);

  /// Opens and maps an existing segment by name and checks its header. Throws std::runtime_error.
  static Segment open(const std::string& name);

  /// Removes the name from /dev/shm; the mapping stays valid. Idempotent, never throws.
  void unlink() noexcept;

  const std::string& name() const noexcept;
  SegmentHeader& header() noexcept;
  std::byte* request_data() noexcept;
  std::byte* response_data() noexcept;
  std::uint64_t ring_bytes() const noexcept;

  /// Removes segments left in /dev/shm by pools whose host process is gone. Returns how many.
  static std::size_t remove_stale();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace procpool::detail
