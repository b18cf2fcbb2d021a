// One side of a single-producer/single-consumer record ring in shared memory (see layout.hpp).
//
// Each side keeps its own position locally and only stores it to shared memory; it never reads its
// own position back, so a peer that scribbles over the control block cannot move it. Everything
// read from the peer is checked: an impossible position or a malformed record is reported as
// corruption, never trusted. No locks; not thread-safe (one thread per side).
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "channel/layout.hpp"

namespace procpool::detail {

/// Writes records into a ring.
class RingWriter {
 public:
  RingWriter() = default;
  RingWriter(RingControl* control, std::byte* data, std::uint64_t capacity) noexcept
      : control_(control), data_(data), capacity_(capacity) {}

  /// Bytes that can be appended now (record headers and padding included), or nullopt if the
  /// reader's published position is impossible (it went backwards or past what was written).
  std::optional<std::uint64_t> free_bytes() noexcept;

  /// Bytes one record with a body of `body_bytes` takes in the ring.
  static constexpr std::uint64_t record_bytes(std::uint64_t body_bytes) noexcept {
    return sizeof(RecordHeader) + padded(body_bytes);
  }

  /// Appends a record whose body is `first` followed by `second`, if there is room; false (and
  /// nothing written) otherwise. Not visible to the reader until publish().
  bool append(RecordType type, std::uint64_t job_id, std::span<const std::byte> first,
              std::span<const std::byte> second = {}) noexcept;

  /// Makes everything appended visible. Returns how the reader wants to be woken (wake_by_* bits),
  /// or 0 if it is not waiting or nothing was appended.
  std::uint32_t publish() noexcept;

  /// For waiting on space: marks the producer as waiting and returns the reader's release counter
  /// (a futex word value). Re-check free_bytes() after this and before sleeping.
  std::uint32_t begin_wait() noexcept;
  void end_wait() noexcept;
  /// The word to futex-wait on with the value begin_wait() returned.
  const std::atomic<std::uint32_t>& wait_word() const noexcept { return control_->read_seq; }
  /// The word a sleeping reader waits on: futex-wake it when publish() returns true.
  std::atomic<std::uint32_t>& wake_word() noexcept { return control_->write_seq; }

 private:
  void copy_in(std::uint64_t pos, const void* src, std::uint64_t n) noexcept;

  RingControl* control_ = nullptr;
  std::byte* data_ = nullptr;
  std::uint64_t capacity_ = 0;
  std::uint64_t write_pos_ = 0;      // appended
  std::uint64_t published_pos_ = 0;  // visible to the reader
  std::uint64_t reader_pos_ = 0;     // last valid reader position seen
  std::uint32_t seq_ = 0;
};

/// A record found in a ring. The header is a private copy; the body is still in the ring and must
/// be copied out (copy_body) before it is interpreted.
struct RecordView {
  RecordHeader header;
  std::uint64_t body_pos = 0;
};

enum class ReadStatus { empty, ready, corrupt };

/// Reads records from a ring.
class RingReader {
 public:
  RingReader() = default;
  RingReader(RingControl* control, std::byte* data, std::uint64_t capacity) noexcept
      : control_(control), data_(data), capacity_(capacity) {}

  /// Looks at the next record without consuming it. `corrupt` if the writer's position is
  /// impossible, a partial record is visible, or the body is longer than `max_body`. The record
  /// type is for the caller to check.
  ReadStatus peek(RecordView& record, std::uint64_t max_body) noexcept;

  /// Copies `n` bytes of the record's body, starting at `offset`, to `dest`. The caller checked
  /// offset + n <= record.header.length.
  void copy_body(const RecordView& record, std::uint64_t offset, void* dest,
                 std::uint64_t n) const noexcept;

  /// Appends the record's whole body to `out` (which the caller reserved): unlike resizing and
  /// then copy_body, the new bytes are written once, not zero-filled first. Throws only
  /// std::bad_alloc.
  void append_body(const RecordView& record, std::vector<std::byte>& out) const;

  /// Moves past the record. Its space returns to the writer at release().
  void consume(const RecordView& record) noexcept;

  /// Returns consumed space to the writer. True if the writer is waiting for space and must be
  /// woken.
  bool release() noexcept;

  /// True if the writer has published past what was consumed (cheap; no validation).
  bool has_data() const noexcept;

  /// For waiting on data: marks the consumer as waiting to be woken `how` (wake_by_* bits, added
  /// to those already set) and returns the writer's publish counter (a futex word value).
  /// Re-check has_data() after this and before sleeping.
  std::uint32_t begin_wait(std::uint32_t how = wake_by_default) noexcept;
  /// Clears the `how` bits of the consumer's wait.
  void end_wait(std::uint32_t how = wake_by_default) noexcept;
  const std::atomic<std::uint32_t>& wait_word() const noexcept { return control_->write_seq; }
  /// The word a sleeping writer waits on: futex-wake it when release() returns true.
  std::atomic<std::uint32_t>& wake_word() noexcept { return control_->read_seq; }
  /// For a waiter on wait_word() that must look again although the writer will publish nothing
  /// more (it died): changes the writer's publish counter, so that one about to sleep with the
  /// value it read before returns at once, and returns the word to futex-wake. Only once the
  /// writer is gone.
  std::atomic<std::uint32_t>& interrupt_wait() noexcept;

 private:
  RingControl* control_ = nullptr;
  std::byte* data_ = nullptr;
  std::uint64_t capacity_ = 0;
  std::uint64_t read_pos_ = 0;      // consumed
  std::uint64_t released_pos_ = 0;  // visible to the writer
  std::uint64_t writer_pos_ = 0;    // last valid writer position seen
  std::uint32_t seq_ = 0;
  std::uint32_t waiting_ = 0;  // what consumer_waiting holds
};

/// True for the record types a peer may send on a ring.
bool is_request_record(std::uint32_t type) noexcept;
bool is_response_record(std::uint32_t type) noexcept;

}  // namespace procpool::detail
