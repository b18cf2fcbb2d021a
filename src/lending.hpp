// Lending: the host's side of LentBuffer. A Lender hands out shared-memory blocks (memfds mapped
// here) and takes them back for reuse; the supervisor passes a job's blocks to the worker that
// runs it.
#pragma once

#include <cstddef>
#include <memory>
#include <mutex>
#include <vector>

#include "channel/shared_mapping.hpp"
#include "platform/platform.hpp"
#include "procpool/lent_buffer.hpp"

namespace procpool::detail {

/// One lent memory block: a memfd, a read-only descriptor of it for workers that read it, and the
/// host's mapping.
struct LentBlock {
  platform::UniqueFd descriptor;
  platform::UniqueFd read_only;
  SharedMapping mapping;
  std::size_t capacity = 0;
};

/// What the supervisor needs of a LentBuffer beyond its public face.
struct LentAccess {
  static const LentBlock& block(const LentBuffer& buffer) noexcept { return *buffer.block_; }
  static bool same_memory(const LentBuffer& a, const LentBuffer& b) noexcept {
    return a.block_ == b.block_;
  }
  static LentBuffer make(std::shared_ptr<LentBlock> block, std::size_t size) noexcept {
    auto* data = block->mapping.data();
    return LentBuffer(std::move(block), data, size);
  }
};

/// Hands out blocks, reusing those given back. Thread-safe.
class Lender : public std::enable_shared_from_this<Lender> {
 public:
  Lender() { spare_.reserve(max_spare_blocks); }

  /// A buffer of `bytes`, in a given-back block if one is big enough (and not more than twice as
  /// big), else in a new one. Throws std::invalid_argument for 0 bytes, std::runtime_error if the
  /// OS refuses the memory.
  LentBuffer lend(std::size_t bytes);

 private:
  void give_back(LentBlock* block) noexcept;

  // Blocks kept for reuse: at most this many, and this many bytes in all.
  static constexpr std::size_t max_spare_blocks = 8;
  static constexpr std::size_t max_spare_bytes = std::size_t{1} << 30;

  std::mutex mutex_;
  std::vector<std::unique_ptr<LentBlock>> spare_;
  std::size_t spare_bytes_ = 0;
};

}  // namespace procpool::detail
