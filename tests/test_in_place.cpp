// In-place jobs and lent buffers: a worker reads its input and writes its output where they lie
// in shared memory the host lent, gets the input read-only, and reports a size the host checks;
// buffers survive retries and their callers' handles, and are lent again once given back.
#include <cstring>
#include <procpool/procpool.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "catch.hpp"
#include "test_support.hpp"

using namespace procpool;

namespace {

void fill_pattern(const LentBuffer& buffer, unsigned seed) {
  auto bytes = buffer.bytes();
  for (std::size_t i = 0; i < bytes.size(); ++i)
    bytes[i] = static_cast<std::byte>((i * 131 + seed) & 0xff);
}

bool same_bytes(const LentBuffer& a, const LentBuffer& b, std::size_t n) {
  return std::memcmp(a.bytes().data(), b.bytes().data(), n) == 0;
}

// A lent buffer's mapping in a worker, as the test jobs lent_mappings and in_place_input_mappings
// describe it: "<permissions> <device> <inode>".
struct WorkerMapping {
  std::string permissions;
  std::string file;  // "<device> <inode>"
};

std::vector<WorkerMapping> parse_mappings(const std::string& lines) {
  std::vector<WorkerMapping> mappings;
  std::istringstream in(lines);
  for (std::string permissions, device, inode; in >> permissions >> device >> inode;)
    mappings.push_back({permissions, device + " " + inode});
  return mappings;
}

// "<device> <inode>" of the memory file a buffer lies in, as /proc/<pid>/maps names it.
std::string file_of(const LentBuffer& buffer) {
  test::Mapping m = test::own_mapping_of(buffer.bytes().data());
  return m.device + " " + std::to_string(m.inode);
}

// The worker's mappings of `buffer` (the pool's only worker runs lent_mappings).
std::vector<std::string> worker_permissions(Pool& pool, const LentBuffer& buffer) {
  JobResult listed = pool.submit("lent_mappings", Bytes{}).get();
  REQUIRE(listed.ok());
  std::vector<std::string> permissions;
  for (const WorkerMapping& m : parse_mappings(test::text(listed.value()))) {
    if (m.file == file_of(buffer)) permissions.push_back(m.permissions);
  }
  return permissions;
}

bool accessible(const std::string& permissions) {
  return permissions.find_first_of("rwx") != std::string::npos;
}

ErrorKind error_kind(Future<std::uint64_t> future) {
  Result<std::uint64_t> result = future.get();
  REQUIRE_FALSE(result.ok());
  return result.error().kind;
}

}  // namespace

TEST_CASE("an in-place job reads its input and writes its output where they lie") {
  Pool pool(test::quiet_options(1));
  LentBuffer input = pool.lend(3 << 20);
  LentBuffer output = pool.lend(4 << 20);
  REQUIRE(input.size() == (3 << 20));
  REQUIRE(output.size() == (4 << 20));
  fill_pattern(input, 7);
  Result<std::uint64_t> written = pool.submit_in_place("in_place_copy", input, output).get();
  REQUIRE(written.ok());
  CHECK(written.value() == (3u << 20));
  CHECK(same_bytes(input, output, 3 << 20));
}

TEST_CASE("a worker gets its input read-only: writing to it crashes the job and changes nothing") {
  Pool pool(test::quiet_options(1));
  LentBuffer input = pool.lend(4096);
  LentBuffer output = pool.lend(4096);
  fill_pattern(input, 1);
  std::vector<std::byte> before(input.bytes().begin(), input.bytes().end());
  CHECK(error_kind(pool.submit_in_place("in_place_write_input", input, output)) ==
        ErrorKind::worker_crashed);
  CHECK(std::equal(before.begin(), before.end(), input.bytes().begin()));
  // The pool serves again with a new worker.
  CHECK(pool.submit_in_place("in_place_copy", input, output).get().ok());
}

TEST_CASE("a size claimed beyond the output buffer fails the job with payload_too_large") {
  Pool pool(test::quiet_options(1));
  CHECK(error_kind(pool.submit_in_place("in_place_overclaim", pool.lend(100), pool.lend(100))) ==
        ErrorKind::payload_too_large);
}

TEST_CASE("a retried in-place job runs again on the same buffers, which the job keeps alive") {
  Pool pool(test::quiet_options(1));
  LentBuffer output = pool.lend(1 << 20);
  Future<std::uint64_t> future;
  {
    LentBuffer input = pool.lend(1 << 20);
    fill_pattern(input, 3);
    SubmitOptions options;
    options.idempotent = true;
    options.max_attempts = 2;
    future = pool.submit_in_place("in_place_crash_first_attempt", input, output, options);
  }  // the caller's handle of the input is gone; the job still holds the buffer
  Result<std::uint64_t> written = future.get();
  REQUIRE(written.ok());
  CHECK(written.value() == (1u << 20));
  LentBuffer expected = pool.lend(1 << 20);
  fill_pattern(expected, 3);
  CHECK(same_bytes(expected, output, 1 << 20));
  CHECK(pool.stats().retries == 1);
}

TEST_CASE("bad in-place requests get a ready error, with what was wrong") {
  PoolOptions options = test::quiet_options(1);
  options.max_result_bytes = 1 << 20;
  Pool pool(options);
  LentBuffer a = pool.lend(16);
  LentBuffer b = pool.lend(16);
  SECTION("an empty buffer") {
    Result<std::uint64_t> r = pool.submit_in_place("in_place_copy", a, LentBuffer()).get();
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().kind == ErrorKind::invalid_request);
    CHECK(r.error().message.find("Pool::lend") != std::string::npos);
  }
  SECTION("the same buffer as input and output") {
    LentBuffer copy = a;
    Result<std::uint64_t> r = pool.submit_in_place("in_place_copy", a, copy).get();
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().kind == ErrorKind::invalid_request);
    CHECK(r.error().message.find("two different buffers") != std::string::npos);
  }
  SECTION("an output over max_result_bytes") {
    CHECK(error_kind(pool.submit_in_place("in_place_copy", a, pool.lend((1 << 20) + 1))) ==
          ErrorKind::payload_too_large);
  }
  SECTION("a name registered as an ordinary or owning job, and an unknown one") {
    Result<std::uint64_t> r = pool.submit_in_place("echo", a, b).get();
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().kind == ErrorKind::unknown_job);
    CHECK(r.error().message.find("not as an in-place job") != std::string::npos);
    Result<std::uint64_t> owning = pool.submit_in_place("owning_reverse", a, b).get();
    REQUIRE_FALSE(owning.ok());
    CHECK(owning.error().message.find("not as an in-place job") != std::string::npos);
    CHECK(error_kind(pool.submit_in_place("no_such_job", a, b)) == ErrorKind::unknown_job);
  }
  SECTION("lending 0 bytes") {
    CHECK_THROWS_AS(pool.lend(0), std::invalid_argument);
  }
  // The pool is unharmed.
  CHECK(pool.submit_in_place("in_place_copy", a, b).get().ok());
}

TEST_CASE("a given-back buffer is lent again, and a buffer may outlive its pool") {
  LentBuffer survivor;
  {
    Pool pool(test::quiet_options(1));
    std::byte* first = nullptr;
    {
      LentBuffer buffer = pool.lend(1 << 20);
      first = buffer.bytes().data();
    }
    LentBuffer again = pool.lend(1 << 20);
    CHECK(again.bytes().data() == first);
    survivor = pool.lend(4096);
  }
  fill_pattern(survivor, 9);  // still mapped after the pool is gone
  CHECK(survivor.bytes()[1] == static_cast<std::byte>((131 + 9) & 0xff));
}

TEST_CASE("in-place and ordinary jobs interleave on several workers without mixing bytes") {
  Pool pool(test::quiet_options(2));
  std::vector<LentBuffer> inputs, outputs;
  std::vector<Future<std::uint64_t>> in_place;
  std::vector<JobFuture> ordinary;
  for (unsigned i = 0; i < 40; ++i) {
    inputs.push_back(pool.lend(1000 + i * 97));
    outputs.push_back(pool.lend(1000 + i * 97));
    fill_pattern(inputs.back(), i);
    in_place.push_back(pool.submit_in_place("in_place_copy", inputs.back(), outputs.back()));
    ordinary.push_back(pool.submit("echo", test::bytes(std::to_string(i))));
  }
  for (unsigned i = 0; i < 40; ++i) {
    INFO("job " << i);
    Result<std::uint64_t> written = in_place[i].get();
    REQUIRE(written.ok());
    CHECK(written.value() == inputs[i].size());
    CHECK(same_bytes(inputs[i], outputs[i], inputs[i].size()));
    CHECK(test::text(ordinary[i].get().value()) == std::to_string(i));
  }
}

TEST_CASE("buffers reused across jobs, as input and as output in turn, carry each job's bytes") {
  Pool pool(test::quiet_options(1));  // one worker: it sees the same buffers again and again
  LentBuffer a = pool.lend(64 * 1024);
  LentBuffer b = pool.lend(64 * 1024);
  for (unsigned round = 0; round < 6; ++round) {
    INFO("round " << round);
    LentBuffer& input = round % 2 == 0 ? a : b;
    LentBuffer& output = round % 2 == 0 ? b : a;
    fill_pattern(input, round);
    Result<std::uint64_t> written = pool.submit_in_place("in_place_copy", input, output).get();
    REQUIRE(written.ok());
    CHECK(same_bytes(input, output, input.size()));
  }
  // Given back and lent again: a new job on the recycled memory sees the new bytes.
  a = LentBuffer();
  LentBuffer c = pool.lend(64 * 1024);
  fill_pattern(c, 99);
  REQUIRE(pool.submit_in_place("in_place_copy", c, b).get().ok());
  CHECK(same_bytes(c, b, c.size()));
}

TEST_CASE("a worker that cannot take an in-place job's buffers is replaced, and the job retried") {
  Pool pool(test::quiet_options(1));
  JobResult closed = pool.submit("close_channel", Bytes{}).get();
  REQUIRE(closed.ok());
  LentBuffer input = pool.lend(4096);
  LentBuffer output = pool.lend(4096);
  fill_pattern(input, 5);
  SubmitOptions options;
  options.idempotent = true;
  options.max_attempts = 2;
  Result<std::uint64_t> written =
      pool.submit_in_place("in_place_copy", input, output, options).get();
  REQUIRE(written.ok());
  CHECK(same_bytes(input, output, 4096));
  CHECK(pool.stats().retries == 1);
}

TEST_CASE("once an in-place job's future is ready, its worker can no longer write to its output") {
  Pool pool(test::quiet_options(1));  // one worker: the later job runs where the pointer was kept
  LentBuffer input = pool.lend(4096);
  LentBuffer output = pool.lend(4096);
  fill_pattern(input, 11);
  REQUIRE(pool.submit_in_place("in_place_keep_output", input, output).get().ok());
  // The caller owns the output again: it reads and writes it as it likes.
  fill_pattern(output, 12);
  std::vector<std::byte> before(output.bytes().begin(), output.bytes().end());
  // A later job on the same worker writes through the pointer the first one kept: the mapping is
  // gone, so the write kills its worker, and the output keeps the caller's bytes.
  JobResult late = pool.submit("write_kept_output", Bytes{std::byte{0xee}}).get();
  CHECK_FALSE(late.ok());
  if (!late.ok()) CHECK(late.error().kind == ErrorKind::worker_crashed);
  CHECK(std::equal(before.begin(), before.end(), output.bytes().begin()));
  // The pool serves again with a new worker.
  CHECK(pool.submit_in_place("in_place_copy", input, output).get().ok());
}

TEST_CASE("when an in-place job ends, however it ends, its worker maps neither buffer accessibly") {
  Pool pool(test::quiet_options(1));
  LentBuffer input = pool.lend(64 * 1024);
  LentBuffer output = pool.lend(64 * 1024);
  fill_pattern(input, 13);
  std::string job;
  SECTION("with a result") {
    job = "in_place_copy";
  }
  SECTION("with the handler's exception") {
    job = "in_place_throw";
  }
  SECTION("with a size over its output") {
    job = "in_place_overclaim";
  }
  INFO(job);
  Result<std::uint64_t> ended = pool.submit_in_place(job, input, output).get();
  CHECK(ended.ok() == (job == "in_place_copy"));
  // The worker may keep them mapped (they are costly to map again), but neither readable nor
  // writable.
  for (const LentBuffer* buffer : {&input, &output}) {
    for (const std::string& permissions : worker_permissions(pool, *buffer)) {
      INFO((buffer == &input ? "input" : "output") << " mapped " << permissions);
      CHECK_FALSE(accessible(permissions));
    }
  }
}

TEST_CASE("with kept_accessible, a worker leaves the buffers mapped as their job had them") {
  PoolOptions options = test::quiet_options(1);
  options.lent_buffers_after_job = LentBuffersAfterJob::kept_accessible;
  Pool pool(options);
  LentBuffer input = pool.lend(4096);
  LentBuffer output = pool.lend(4096);
  fill_pattern(input, 15);
  REQUIRE(pool.submit_in_place("in_place_keep_output", input, output).get().ok());
  CHECK(worker_permissions(pool, input) == std::vector<std::string>{"r--s"});
  CHECK(worker_permissions(pool, output) == std::vector<std::string>{"rw-s"});
  // The trade this setting makes: a pointer the handler kept still reaches the output.
  fill_pattern(output, 16);
  REQUIRE(pool.submit("write_kept_output", Bytes{std::byte{0xee}}).get().ok());
  CHECK(output.bytes()[0] == std::byte{0xee});
  // The next job on the same buffers finds them mapped and runs as ever.
  REQUIRE(pool.submit_in_place("in_place_copy", input, output).get().ok());
  CHECK(same_bytes(input, output, 4096));
  CHECK(pool.stats().workers_started == 1);
}

TEST_CASE("a buffer lent as an input is writable through no mapping in its worker, while it runs") {
  PoolOptions options = test::quiet_options(1);  // one worker: it had `a` as an output just before
  options.lent_buffers_after_job =
      GENERATE(LentBuffersAfterJob::inaccessible, LentBuffersAfterJob::kept_accessible);
  INFO("kept accessible: " << (options.lent_buffers_after_job ==
                               LentBuffersAfterJob::kept_accessible));
  Pool pool(options);
  LentBuffer a = pool.lend(64 * 1024);
  LentBuffer b = pool.lend(64 * 1024);
  LentBuffer report = pool.lend(64 * 1024);
  fill_pattern(b, 14);
  REQUIRE(pool.submit_in_place("in_place_copy", b, a).get().ok());
  // Now `a` is the input: the job lists every mapping its worker has of it.
  Result<std::uint64_t> written = pool.submit_in_place("in_place_input_mappings", a, report).get();
  REQUIRE(written.ok());
  const std::string lines(reinterpret_cast<const char*>(report.bytes().data()), written.value());
  std::vector<WorkerMapping> mappings = parse_mappings(lines);
  std::size_t readable = 0;
  for (const WorkerMapping& m : mappings) {
    INFO("the input mapped " << m.permissions);
    CHECK(m.permissions.find('w') == std::string::npos);
    if (m.permissions.find('r') != std::string::npos) ++readable;
  }
  CHECK(readable == 1);  // the job's own input, read-only
}
