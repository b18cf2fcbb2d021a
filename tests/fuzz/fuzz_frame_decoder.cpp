// libFuzzer target: the supervisor's reading of a worker's response ring.
//
// A worker may scribble anything over its shared segment, so the fuzzer plays a hostile worker: it
// writes well-formed records through the real RingWriter, overwrites ring bytes, and sets the
// published write position to arbitrary values, in any order. In between, the host side runs the
// same framing loop as Supervisor::read_responses over the real RingReader: peek, check the record
// type, copy the body out, consume, release. What must hold, whatever the bytes:
//   - no read outside the ring (the ring is a heap buffer of exactly its capacity: AddressSanitizer
//     reports any byte past it);
//   - each drain ends (every record read moves the read position forward by at least a header, and
//     never past what the writer published);
//   - a record the reader accepts is well formed: its body fits the published bytes and the
//     supervisor's max_body; anything else is reported as corrupt (a protocol violation), after
//     which the supervisor reads no more from that worker.
// Input format (all integers little-endian): one byte choosing the ring capacity, then operations
// (see the Op enum) until the input ends. tests/fuzz/make_corpus.py writes the seed corpus.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "channel/layout.hpp"
#include "channel/ring.hpp"

using namespace procpool::detail;

namespace {

/// Reads the fuzzer's input front to back; past its end every value reads as zero.
class Input {
 public:
  Input(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}
  bool empty() const { return at_ >= size_; }
  std::uint64_t take(int bytes) {
    std::uint64_t value = 0;
    for (int i = 0; i < bytes; ++i) {
      if (at_ < size_) value |= std::uint64_t{data_[at_++]} << (8 * i);
    }
    return value;
  }
  /// Up to `n` of the next input bytes, zero-padded to `n`.
  std::vector<std::byte> bytes(std::size_t n) {
    std::vector<std::byte> out(n);
    std::size_t have = std::min(n, size_ - std::min(at_, size_));
    if (have) std::memcpy(out.data(), data_ + at_, have);
    at_ += have;
    return out;
  }

 private:
  const std::uint8_t* data_;
  std::size_t size_;
  std::size_t at_ = 0;
};

enum class Op : std::uint8_t {
  append = 0,         // type (1), job id (1), body length (2), body: a record through RingWriter
  scribble = 1,       // ring offset (2), length (1), bytes: overwrite ring bytes directly
  set_write_pos = 2,  // value (8): store an arbitrary published write position
  advance = 3,        // delta (2): publish further than the records written
  drain = 4,          // run the supervisor's read loop
  count = 5,
};

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "fuzz_frame_decoder: %s\n", what);
  std::abort();
}

struct Ring {
  explicit Ring(std::uint64_t bytes)
      : capacity(bytes),
        data(bytes),
        writer(&control, data.data(), capacity),
        reader(&control, data.data(), capacity),
        max_body(max_record_body(capacity)) {}

  std::uint64_t capacity;
  RingControl control;
  std::vector<std::byte> data;  // exactly `capacity` bytes, so that ASan sees any overread
  RingWriter writer;
  RingReader reader;
  std::uint64_t max_body;
  std::uint64_t read_pos = 0;  // the fuzzer's own account of what the reader consumed
  bool violated = false;       // the supervisor saw a protocol violation: it stops reading
};

/// Supervisor::read_responses' framing: returns when the ring is empty or corrupt.
void drain(Ring& ring) {
  std::uint64_t published = ring.control.write_pos.load(std::memory_order_relaxed);
  std::uint64_t records = 0;
  for (;;) {
    RecordView record;
    ReadStatus status = ring.reader.peek(record, ring.max_body);
    if (status == ReadStatus::empty) break;
    if (status == ReadStatus::corrupt || !is_response_record(record.header.type)) {
      ring.violated = true;
      return;
    }
    // Accepted: it must be a whole, bounded record between the read and the published position.
    if (record.header.length > ring.max_body) fail("accepted a body longer than max_body");
    if (record.body_pos != ring.read_pos + sizeof(RecordHeader)) {
      fail("accepted a record that does not start at the read position");
    }
    std::uint64_t end = record.body_pos + padded(record.header.length);
    if (end > published || end - ring.read_pos > ring.capacity) {
      fail("accepted a record that extends past the published bytes");
    }
    // The supervisor copies bodies out whole (result_data, into a buffer it reserved, so never
    // to a null pointer) or as fixed structs (hello, result_start); copy exactly the body so that
    // any read past the ring shows.
    std::vector<std::byte> body(record.header.length);
    if (!body.empty()) ring.reader.copy_body(record, 0, body.data(), body.size());
    if (record.header.length >= sizeof(ResultStartBody)) {
      ResultStartBody start;
      ring.reader.copy_body(record, 0, &start, sizeof start);
    }
    ring.reader.consume(record);
    ring.read_pos = end;
    if (++records > ring.capacity / sizeof(RecordHeader)) fail("a drain did not end");
  }
  ring.reader.release();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Input in(data, size);
  // 64 B to 64 KiB; the pool's default is larger, but the bounds logic is the same for every
  // power of two, and a small ring wraps after a few records.
  Ring ring(std::uint64_t{64} << (in.take(1) % 11));
  while (!in.empty() && !ring.violated) {
    switch (static_cast<Op>(in.take(1) % static_cast<std::uint8_t>(Op::count))) {
      case Op::append: {
        // Mostly the response types; sometimes any type, which the reader must reject.
        auto type_byte = static_cast<std::uint32_t>(in.take(1));
        auto type = static_cast<RecordType>(type_byte < 0xf0 ? 16 + type_byte % 3 : type_byte);
        std::uint64_t job_id = in.take(1);
        auto body_bytes = static_cast<std::size_t>(std::min(in.take(2), ring.max_body));
        std::vector<std::byte> body = in.bytes(body_bytes);
        if (ring.writer.append(type, job_id, body)) ring.writer.publish();
        break;
      }
      case Op::scribble: {
        std::uint64_t offset = in.take(2) % ring.capacity;
        std::vector<std::byte> bytes = in.bytes(in.take(1));
        for (std::size_t i = 0; i < bytes.size(); ++i)
          ring.data[(offset + i) % ring.capacity] = bytes[i];
        break;
      }
      case Op::set_write_pos:
        ring.control.write_pos.store(in.take(8), std::memory_order_release);
        break;
      case Op::advance:
        ring.control.write_pos.fetch_add(in.take(2), std::memory_order_acq_rel);
        break;
      case Op::drain:
      case Op::count:
        drain(ring);
        break;
    }
  }
  if (!ring.violated) drain(ring);
  return 0;
}
