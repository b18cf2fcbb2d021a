// LentBuffer: shared memory that an in-place job reads or writes where it lies.
#pragma once

#include <cstddef>
#include <memory>
#include <span>

#include "procpool/export.hpp"

namespace procpool {

namespace detail {
struct LentBlock;
struct LentAccess;
}  // namespace detail

/// A buffer in shared memory lent by a Pool (Pool::lend) for in-place jobs
/// (Pool::submit_in_place): the worker maps it and reads or writes it where it lies, so a large
/// payload or result is never copied through the pool. A handle: copies refer to the same memory,
/// which lives as long as any copy or any job using it, and then goes back to its pool to be lent
/// again.
///
/// While a job using the buffer is queued or running, do not write to it, and do not read it if it
/// is the job's output: the worker may be using it at that moment. Once the job's future is ready,
/// the worker has let go of it: before it reports the outcome (whatever it is), the worker takes
/// its own access to the buffer away. It may keep the buffer mapped for a later job on the same
/// buffer, but nothing left in it (a pointer its handler kept, a thread it left running) can read
/// or write the buffer; trying kills the worker with SIGSEGV. (A pool whose
/// PoolOptions::lent_buffers_after_job is kept_accessible trades that away for speed: its workers
/// leave the buffers accessible after their jobs.) A worker gets an input buffer
/// read-only: while the job runs, no mapping of it in that worker is writable, even if the buffer
/// was an output of an earlier job there. (This guards against a handler's bugs, not against a
/// worker whose code is hostile: see docs/security.md.)
///
/// Thread-safety: like std::shared_ptr (copies may be used and destroyed on different threads; the
/// bytes themselves are not synchronised).
class PROCPOOL_API LentBuffer {
 public:
  /// An empty handle: size() is 0 and it cannot be used by a job.
  LentBuffer() noexcept;
  /// Lets go of this handle; the memory goes back to its pool with the last one.
  ~LentBuffer();
  /// Another handle to the same memory.
  LentBuffer(const LentBuffer&) noexcept;
  /// Makes this a handle to `other`'s memory, letting go of its own.
  LentBuffer& operator=(const LentBuffer&) noexcept;
  /// Takes over `other`'s memory; `other` becomes empty.
  LentBuffer(LentBuffer&&) noexcept;
  /// Takes over `other`'s memory, letting go of its own; `other` becomes empty.
  LentBuffer& operator=(LentBuffer&&) noexcept;

  /// The buffer's bytes (size() of them), writable by the caller.
  std::span<std::byte> bytes() const noexcept { return {data_, size_}; }
  /// The size asked of Pool::lend.
  std::size_t size() const noexcept { return size_; }
  /// False for an empty handle.
  explicit operator bool() const noexcept { return data_ != nullptr; }

 private:
  friend struct detail::LentAccess;
  LentBuffer(std::shared_ptr<detail::LentBlock> block, std::byte* data, std::size_t size) noexcept;

  std::shared_ptr<detail::LentBlock> block_;
  std::byte* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace procpool
