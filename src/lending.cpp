#include "lending.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>

namespace procpool {

LentBuffer::LentBuffer() noexcept = default;
LentBuffer::~LentBuffer() = default;
LentBuffer::LentBuffer(const LentBuffer&) noexcept = default;
LentBuffer& LentBuffer::operator=(const LentBuffer&) noexcept = default;
LentBuffer::LentBuffer(LentBuffer&& other) noexcept
    : block_(std::move(other.block_)),
      data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)) {}
LentBuffer& LentBuffer::operator=(LentBuffer&& other) noexcept {
  block_ = std::move(other.block_);
  data_ = std::exchange(other.data_, nullptr);
  size_ = std::exchange(other.size_, 0);
  return *this;
}
LentBuffer::LentBuffer(std::shared_ptr<detail::LentBlock> block, std::byte* data,
                       std::size_t size) noexcept
    : block_(std::move(block)), data_(data), size_(size) {}

namespace detail {

namespace {

constexpr std::size_t page_bytes = 4096;

std::unique_ptr<LentBlock> new_block(std::size_t bytes) {
  auto block = std::make_unique<LentBlock>();
  block->capacity = (bytes + page_bytes - 1) / page_bytes * page_bytes;
  try {
    block->descriptor = platform::make_shared_memory(block->capacity, "procpool-lent");
    block->read_only = platform::reopen_read_only(block->descriptor.get());
    block->mapping = SharedMapping::map(block->descriptor.get(), block->capacity,
                                        SharedMapping::Access::read_write);
  } catch (const std::system_error& e) {
    throw std::runtime_error("cannot lend " + std::to_string(bytes) +
                             " bytes of shared memory: " + e.what());
  }
  return block;
}

}  // namespace

LentBuffer Lender::lend(std::size_t bytes) {
  if (bytes == 0) throw std::invalid_argument("Pool::lend: a lent buffer needs at least 1 byte");
  std::unique_ptr<LentBlock> block;
  {
    std::lock_guard lock(mutex_);
    // The smallest block given back that fits, if it is not more than twice as big.
    auto best = spare_.end();
    for (auto it = spare_.begin(); it != spare_.end(); ++it) {
      if ((*it)->capacity >= bytes && (*it)->capacity / 2 <= bytes &&
          (best == spare_.end() || (*it)->capacity < (*best)->capacity)) {
        best = it;
      }
    }
    if (best != spare_.end()) {
      block = std::move(*best);
      spare_.erase(best);
      spare_bytes_ -= block->capacity;
    }
  }
  if (!block) block = new_block(bytes);
  // Back to this lender when the last handle and the last job using it let go, if the lender
  // (the pool) is still there; otherwise unmapped and closed.
  std::weak_ptr<Lender> home = weak_from_this();
  std::shared_ptr<LentBlock> shared(block.release(), [home](LentBlock* returned) {
    if (auto lender = home.lock()) {
      lender->give_back(returned);
    } else {
      delete returned;
    }
  });
  return LentAccess::make(std::move(shared), bytes);
}

void Lender::give_back(LentBlock* returned) noexcept {
  std::unique_ptr<LentBlock> block(returned);
  std::lock_guard lock(mutex_);
  if (spare_.size() >= max_spare_blocks || spare_bytes_ + block->capacity > max_spare_bytes) return;
  spare_bytes_ += block->capacity;
  spare_.push_back(std::move(block));  // reserved: cannot throw
}

}  // namespace detail
}  // namespace procpool
