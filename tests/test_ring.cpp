// The shared-memory ring: framing, wrap-around, and rejection of everything a peer could corrupt.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <numeric>
#include <thread>
#include <vector>

#include "catch.hpp"
#include "channel/job_claims.hpp"
#include "channel/layout.hpp"
#include "channel/ring.hpp"

using namespace procpool::detail;

namespace {

struct TestRing {
  static constexpr std::uint64_t capacity = 1024;
  RingControl control;
  std::vector<std::byte> data = std::vector<std::byte>(capacity);
  RingWriter writer{&control, data.data(), capacity};
  RingReader reader{&control, data.data(), capacity};
};

std::vector<std::byte> pattern(std::size_t n, int seed) {
  std::vector<std::byte> v(n);
  for (std::size_t i = 0; i < n; ++i)
    v[i] = static_cast<std::byte>((i * 7 + seed) & 0xff);
  return v;
}

std::vector<std::byte> read_body(RingReader& reader, const RecordView& record) {
  std::vector<std::byte> body(record.header.length);
  reader.copy_body(record, 0, body.data(), body.size());
  return body;
}

}  // namespace

TEST_CASE("records written are read back in order with their type, job id and body") {
  TestRing ring;
  auto a = pattern(10, 1), b = pattern(33, 2);
  REQUIRE(ring.writer.append(RecordType::job_start, 7, a));
  REQUIRE(ring.writer.append(RecordType::job_data, 7, b, a));
  RecordView record;
  CHECK(ring.reader.peek(record, 512) == ReadStatus::empty);  // nothing published yet
  ring.writer.publish();

  REQUIRE(ring.reader.peek(record, 512) == ReadStatus::ready);
  CHECK(record.header.type == static_cast<std::uint32_t>(RecordType::job_start));
  CHECK(record.header.job_id == 7);
  CHECK(read_body(ring.reader, record) == a);
  ring.reader.consume(record);

  REQUIRE(ring.reader.peek(record, 512) == ReadStatus::ready);
  std::vector<std::byte> expected(b.size() + a.size());
  std::copy(b.begin(), b.end(), expected.begin());
  std::copy(a.begin(), a.end(), expected.begin() + static_cast<std::ptrdiff_t>(b.size()));
  CHECK(read_body(ring.reader, record) == expected);
  ring.reader.consume(record);
  CHECK(ring.reader.peek(record, 512) == ReadStatus::empty);
}

TEST_CASE("records wrap around the end of the ring intact") {
  TestRing ring;
  RecordView record;
  for (int round = 0; round < 200; ++round) {
    auto body = pattern(static_cast<std::size_t>(37 + round % 150), round);
    REQUIRE(ring.writer.append(RecordType::result_data, static_cast<std::uint64_t>(round), body));
    ring.writer.publish();
    REQUIRE(ring.reader.peek(record, 512) == ReadStatus::ready);
    CHECK(record.header.job_id == static_cast<std::uint64_t>(round));
    CHECK(read_body(ring.reader, record) == body);
    ring.reader.consume(record);
    ring.reader.release();
  }
}

TEST_CASE("a writer cannot overrun space the reader has not released") {
  TestRing ring;
  auto body = pattern(200, 3);
  int written = 0;
  while (ring.writer.append(RecordType::job_data, 1, body))
    ++written;
  CHECK(written == 4);  // 4 x (16 + 200) = 864 of 1024 bytes
  ring.writer.publish();
  RecordView record;
  REQUIRE(ring.reader.peek(record, 512) == ReadStatus::ready);
  ring.reader.consume(record);
  CHECK_FALSE(ring.writer.append(RecordType::job_data, 1, body));  // consumed but not released
  CHECK(ring.reader.release() == false);                           // nobody waiting
  CHECK(ring.writer.append(RecordType::job_data, 1, body));
}

TEST_CASE("publish reports each way the reader asked to be woken, until it takes each back") {
  TestRing ring;
  auto body = pattern(8, 5);
  ring.reader.begin_wait(wake_by_default);
  ring.reader.begin_wait(wake_by_futex);
  REQUIRE(ring.writer.append(RecordType::job_data, 1, body));
  CHECK(ring.writer.publish() == (wake_by_default | wake_by_futex));
  ring.reader.end_wait(wake_by_default);
  REQUIRE(ring.writer.append(RecordType::job_data, 1, body));
  CHECK(ring.writer.publish() == wake_by_futex);
  ring.reader.begin_wait(wake_by_default);
  ring.reader.end_wait(wake_by_futex);
  REQUIRE(ring.writer.append(RecordType::job_data, 1, body));
  CHECK(ring.writer.publish() == wake_by_default);
  ring.reader.end_wait(wake_by_default);
  REQUIRE(ring.writer.append(RecordType::job_data, 1, body));
  CHECK(ring.writer.publish() == 0);
}

TEST_CASE("publish and release report a sleeping peer, and only then") {
  TestRing ring;
  auto body = pattern(8, 4);
  REQUIRE(ring.writer.append(RecordType::job_data, 1, body));
  CHECK_FALSE(ring.writer.publish());
  ring.reader.begin_wait();
  REQUIRE(ring.writer.append(RecordType::job_data, 1, body));
  CHECK(ring.writer.publish());
  ring.reader.end_wait();

  RecordView record;
  REQUIRE(ring.reader.peek(record, 512) == ReadStatus::ready);
  ring.reader.consume(record);
  ring.writer.begin_wait();
  CHECK(ring.reader.release());
  ring.writer.end_wait();
}

TEST_CASE("a reader rejects a writer position that is impossible") {
  TestRing ring;
  RecordView record;
  SECTION("past the ring's capacity") {
    ring.control.write_pos.store(TestRing::capacity + 8);
    CHECK(ring.reader.peek(record, 512) == ReadStatus::corrupt);
  }
  SECTION("moving backwards") {
    auto body = pattern(8, 5);
    REQUIRE(ring.writer.append(RecordType::job_data, 1, body));
    ring.writer.publish();
    REQUIRE(ring.reader.peek(record, 512) == ReadStatus::ready);
    ring.control.write_pos.store(8);
    CHECK(ring.reader.peek(record, 512) == ReadStatus::corrupt);
  }
  SECTION("a partial record") {
    ring.control.write_pos.store(8);
    CHECK(ring.reader.peek(record, 512) == ReadStatus::corrupt);
  }
}

TEST_CASE("a reader rejects a record whose length is over the limit or past what was published") {
  TestRing ring;
  RecordView record;
  RecordHeader header{static_cast<std::uint32_t>(RecordType::result_data), 0, 1};
  SECTION("over the caller's limit") {
    header.length = 600;
    std::memcpy(ring.data.data(), &header, sizeof header);
    ring.control.write_pos.store(sizeof header + 600);
    CHECK(ring.reader.peek(record, 512) == ReadStatus::corrupt);
  }
  SECTION("longer than the published bytes") {
    header.length = 100;
    std::memcpy(ring.data.data(), &header, sizeof header);
    ring.control.write_pos.store(sizeof header + 40);
    CHECK(ring.reader.peek(record, 512) == ReadStatus::corrupt);
  }
  SECTION("a huge length") {
    header.length = 0xFFFFFFFFu;
    std::memcpy(ring.data.data(), &header, sizeof header);
    ring.control.write_pos.store(64);
    CHECK(ring.reader.peek(record, 512) == ReadStatus::corrupt);
  }
}

TEST_CASE("a writer rejects a reader position that is impossible") {
  TestRing ring;
  auto body = pattern(8, 6);
  REQUIRE(ring.writer.append(RecordType::job_data, 1, body));
  ring.writer.publish();
  SECTION("past what was published") {
    ring.control.read_pos.store(4096);
    CHECK_FALSE(ring.writer.free_bytes().has_value());
    CHECK_FALSE(ring.writer.append(RecordType::job_data, 1, body));
  }
  SECTION("moving backwards") {
    ring.control.read_pos.store(24);
    REQUIRE(ring.writer.free_bytes().has_value());
    ring.control.read_pos.store(0);
    CHECK_FALSE(ring.writer.free_bytes().has_value());
  }
}

TEST_CASE("only known record types are accepted from each side") {
  CHECK(is_request_record(static_cast<std::uint32_t>(RecordType::job_start)));
  CHECK_FALSE(is_request_record(static_cast<std::uint32_t>(RecordType::hello)));
  CHECK(is_response_record(static_cast<std::uint32_t>(RecordType::result_data)));
  CHECK_FALSE(is_response_record(static_cast<std::uint32_t>(RecordType::job_data)));
  CHECK_FALSE(is_response_record(0));
  CHECK_FALSE(is_response_record(0xdeadbeef));
}

TEST_CASE("a job sent ahead is either run by the worker or taken back by the host, never both") {
  std::atomic<std::uint64_t> claims{0};
  // Jobs 1..3 sent; the worker reads 1 and runs it.
  CHECK(claim_job(claims, 1) == true);
  // The host takes back what the worker has not read: 2 and 3.
  CHECK(take_back_jobs(claims, 2, 3) == 1);
  CHECK(claim_job(claims, 2) == false);
  CHECK(claim_job(claims, 3) == false);
  // Sent after the take-back: run.
  CHECK(claim_job(claims, 4) == true);
  // Nothing left to take back once the worker has read all that was sent.
  CHECK(take_back_jobs(claims, 5, 4) == 4);
  CHECK(claim_job(claims, 5) == true);
}

TEST_CASE("nothing is taken back while the worker has not read the jobs before them") {
  std::atomic<std::uint64_t> claims{0};
  // Jobs 1..3 sent, the worker has read none: taking back 2..3 would skip 1's successors while
  // the host still waits for 1, so nothing changes.
  CHECK(take_back_jobs(claims, 2, 3) == 0);
  CHECK(claim_job(claims, 1) == true);
  CHECK(claim_job(claims, 2) == true);
  CHECK(claim_job(claims, 3) == true);
}

TEST_CASE("a job not yet read is taken back with all after it, and nothing once it is read") {
  std::atomic<std::uint64_t> claims{0};
  CHECK(claim_job(claims, 1) == true);
  // Jobs 2..4 sent; the worker has read 1 only: 2, 3 and 4 are the host's again.
  CHECK(take_back_all_jobs(claims, 2, 4));
  CHECK(claim_job(claims, 2) == false);
  CHECK(claim_job(claims, 3) == false);
  CHECK(claim_job(claims, 4) == false);
  // Job 5 read before the host tries: nothing changes, 6 and 7 stay the worker's (take_back_jobs
  // would have taken them).
  CHECK(claim_job(claims, 5) == true);
  CHECK_FALSE(take_back_all_jobs(claims, 5, 7));
  CHECK(claim_job(claims, 6) == true);
  CHECK(claim_job(claims, 7) == true);
  // A job before `first` unread and still the worker's: nothing either.
  CHECK_FALSE(take_back_all_jobs(claims, 10, 10));
  CHECK(claim_job(claims, 8) == true);
  // Jobs 9..10 taken back, the worker has not passed over them yet: 11..12 can be taken back
  // too, and it skips all four.
  CHECK(take_back_all_jobs(claims, 9, 10));
  CHECK(take_back_all_jobs(claims, 11, 12));
  for (std::uint32_t n = 9; n <= 12; ++n)
    CHECK(claim_job(claims, n) == false);
  CHECK(claim_job(claims, 13) == true);
}

TEST_CASE("a worker refuses a claims word that skips or repeats a job number") {
  std::atomic<std::uint64_t> claims{0};
  CHECK_FALSE(claim_job(claims, 2).has_value());  // 1 was never read
  CHECK(claim_job(claims, 1) == true);
  CHECK_FALSE(claim_job(claims, 1).has_value());  // read twice
}

TEST_CASE("job numbers wrap around 2^32 without a job taken back by mistake") {
  const std::uint32_t start = 0xfffffff0u;
  std::atomic<std::uint64_t> claims{(std::uint64_t{start} << 32) | start};
  for (std::uint32_t n = start + 1; n != 40; ++n)
    REQUIRE(claim_job(claims, n) == true);
  CHECK(take_back_jobs(claims, 40, 41) == 39);
  CHECK(claim_job(claims, 40) == false);
  CHECK(claim_job(claims, 41) == false);
  CHECK(claim_job(claims, 42) == true);
  CHECK(job_number_after(3, 0xfffffffeu));
  CHECK_FALSE(job_number_after(0xfffffffeu, 3));
}

TEST_CASE("racing a worker reading jobs, the host's take-back splits them exactly") {
  // A worker thread reads jobs 1..N as fast as it can while the host takes back everything it has
  // not read at some moment; every job must be counted once, as run or as taken back.
  constexpr std::uint32_t jobs = 200'000;
  for (int round = 0; round < 20; ++round) {
    std::atomic<std::uint64_t> claims{0};
    std::atomic<bool> go{false};
    std::vector<std::uint8_t> ran(jobs + 1, 0);
    std::thread worker([&] {
      while (!go.load(std::memory_order_acquire)) {
      }
      for (std::uint32_t n = 1; n <= jobs; ++n) {
        if (claim_job(claims, n) == true) ran[n] = 1;
      }
    });
    go.store(true, std::memory_order_release);
    // Take back at a different point of the worker's run each round.
    const std::uint32_t after = static_cast<std::uint32_t>(round) * 9'000;
    while (static_cast<std::uint32_t>(claims.load(std::memory_order_acquire)) < after) {
    }
    const std::uint32_t consumed = take_back_jobs(claims, 1, jobs);
    worker.join();
    REQUIRE(consumed <= jobs);
    for (std::uint32_t n = 1; n <= jobs; ++n) {
      INFO("job " << n << ", worker had read " << consumed << " at the take-back");
      REQUIRE(ran[n] == (n <= consumed ? 1 : 0));
    }
  }
}
