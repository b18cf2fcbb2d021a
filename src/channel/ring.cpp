#include "channel/ring.hpp"

#include <algorithm>
#include <atomic>
#include <cstring>

namespace procpool::detail {

std::optional<std::uint64_t> RingWriter::free_bytes() noexcept {
  std::uint64_t reader = control_->read_pos.load(std::memory_order_acquire);
  if (reader < reader_pos_ || reader > published_pos_) return std::nullopt;
  reader_pos_ = reader;
  return capacity_ - (write_pos_ - reader);
}

void RingWriter::copy_in(std::uint64_t pos, const void* src, std::uint64_t n) noexcept {
  std::uint64_t offset = pos & (capacity_ - 1);
  std::uint64_t first = std::min(n, capacity_ - offset);
  std::memcpy(data_ + offset, src, first);
  if (first < n) std::memcpy(data_, static_cast<const std::byte*>(src) + first, n - first);
}

bool RingWriter::append(RecordType type, std::uint64_t job_id, std::span<const std::byte> first,
                        std::span<const std::byte> second) noexcept {
  std::uint64_t body = first.size() + second.size();
  std::uint64_t needed = record_bytes(body);
  auto space = free_bytes();
  if (!space || *space < needed) return false;
  RecordHeader header{static_cast<std::uint32_t>(type), static_cast<std::uint32_t>(body), job_id};
  copy_in(write_pos_, &header, sizeof header);
  std::uint64_t pos = write_pos_ + sizeof header;
  if (!first.empty()) copy_in(pos, first.data(), first.size());
  if (!second.empty()) copy_in(pos + first.size(), second.data(), second.size());
  write_pos_ += needed;
  return true;
}

std::uint32_t RingWriter::publish() noexcept {
  if (published_pos_ == write_pos_) return 0;
  published_pos_ = write_pos_;
  control_->write_pos.store(write_pos_, std::memory_order_release);
  control_->write_seq.store(++seq_, std::memory_order_release);
  // Pairs with the fence in RingReader::begin_wait: either the reader sees the new position on its
  // re-check, or we see its waiting flag here.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  return control_->consumer_waiting.load(std::memory_order_relaxed);
}

std::uint32_t RingWriter::begin_wait() noexcept {
  std::uint32_t seen = control_->read_seq.load(std::memory_order_acquire);
  control_->producer_waiting.store(1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  return seen;
}

void RingWriter::end_wait() noexcept {
  control_->producer_waiting.store(0, std::memory_order_relaxed);
}

bool is_request_record(std::uint32_t type) noexcept {
  switch (static_cast<RecordType>(type)) {
    case RecordType::job_start:
    case RecordType::job_data:
    case RecordType::stop:
      return true;
    default:
      return false;
  }
}

bool is_response_record(std::uint32_t type) noexcept {
  switch (static_cast<RecordType>(type)) {
    case RecordType::hello:
    case RecordType::result_start:
    case RecordType::result_data:
      return true;
    default:
      return false;
  }
}

ReadStatus RingReader::peek(RecordView& record, std::uint64_t max_body) noexcept {
  std::uint64_t writer = control_->write_pos.load(std::memory_order_acquire);
  if (writer < writer_pos_ || writer < read_pos_ || writer - released_pos_ > capacity_) {
    return ReadStatus::corrupt;
  }
  writer_pos_ = writer;
  std::uint64_t available = writer - read_pos_;
  if (available == 0) return ReadStatus::empty;
  if (available < sizeof(RecordHeader)) return ReadStatus::corrupt;
  RecordHeader header;
  copy_body(RecordView{{}, read_pos_}, 0, &header, sizeof header);
  if (header.length > max_body) return ReadStatus::corrupt;
  if (RingWriter::record_bytes(header.length) > available) return ReadStatus::corrupt;
  record.header = header;
  record.body_pos = read_pos_ + sizeof header;
  return ReadStatus::ready;
}

void RingReader::copy_body(const RecordView& record, std::uint64_t offset, void* dest,
                           std::uint64_t n) const noexcept {
  std::uint64_t at = (record.body_pos + offset) & (capacity_ - 1);
  std::uint64_t first = std::min(n, capacity_ - at);
  std::memcpy(dest, data_ + at, first);
  if (first < n) std::memcpy(static_cast<std::byte*>(dest) + first, data_, n - first);
}

void RingReader::append_body(const RecordView& record, std::vector<std::byte>& out) const {
  std::uint64_t at = record.body_pos & (capacity_ - 1);
  std::uint64_t n = record.header.length;
  std::uint64_t first = std::min(n, capacity_ - at);
  out.insert(out.end(), data_ + at, data_ + at + first);
  if (first < n) out.insert(out.end(), data_, data_ + (n - first));
}

void RingReader::consume(const RecordView& record) noexcept {
  read_pos_ = record.body_pos + padded(record.header.length);
}

bool RingReader::release() noexcept {
  if (released_pos_ == read_pos_) return false;
  released_pos_ = read_pos_;
  control_->read_pos.store(read_pos_, std::memory_order_release);
  control_->read_seq.store(++seq_, std::memory_order_release);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  return control_->producer_waiting.load(std::memory_order_relaxed) != 0;
}

bool RingReader::has_data() const noexcept {
  return control_->write_pos.load(std::memory_order_acquire) != read_pos_;
}

std::uint32_t RingReader::begin_wait(std::uint32_t how) noexcept {
  std::uint32_t seen = control_->write_seq.load(std::memory_order_acquire);
  waiting_ |= how;
  control_->consumer_waiting.store(waiting_, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  return seen;
}

std::atomic<std::uint32_t>& RingReader::interrupt_wait() noexcept {
  control_->write_seq.fetch_add(1, std::memory_order_release);
  return control_->write_seq;
}

void RingReader::end_wait(std::uint32_t how) noexcept {
  waiting_ &= ~how;
  control_->consumer_waiting.store(waiting_, std::memory_order_relaxed);
}

}  // namespace procpool::detail
