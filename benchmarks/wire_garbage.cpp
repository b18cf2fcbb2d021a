// The one piece of procpool-soak that knows the channel's private wire format (src/channel/
// layout.hpp, given to this file alone): the mixed load's random garbage and three rows of the
// fault matrix write one particular malformed record where the worker's next result would go, to
// time the recovery from each check the supervisor makes of what a worker writes. No layout-free
// fault can be that record, nor stand in for it: noise over the whole segment (scribble_segment)
// also destroys a result of the job before that the supervisor has not read yet, failing that job
// too, where this record leaves it intact (in a 1-minute soak, 231 protocol violations against
// 129, echo jobs among them).
#include <procpool/procpool.hpp>

#include <cstdint>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "channel/layout.hpp"
#include "soak_jobs.hpp"

namespace bench {

namespace {

// Writes the malformed record `mode` names into the response ring, publishes it, rings the
// doorbell and hangs, so that the runtime never writes the real result: "random" (256 bytes of
// noise), "length" (a result_data record claiming almost 4 GiB), "job_id" (a well-formed
// result_start for another job).
[[noreturn]] void write_malformed_record(const std::string& mode, std::uint64_t job_id) {
  namespace wire = procpool::detail;
  std::byte* base = own_segment().data();
  auto* header = reinterpret_cast<wire::SegmentHeader*>(base);
  wire::RingControl& ring = header->responses;
  const std::uint64_t capacity = header->ring_bytes;
  std::byte* data = base + wire::segment_header_bytes + capacity;
  std::vector<std::byte> record;
  auto append = [&record](const auto& value) {
    const auto* first = reinterpret_cast<const std::byte*>(&value);
    record.insert(record.end(), first, first + sizeof value);
  };
  std::uint64_t published = 0;
  if (mode == "random") {
    std::mt19937_64 random(job_id);
    for (int i = 0; i < 256; ++i)
      record.push_back(static_cast<std::byte>(random()));
    published = record.size();
  } else if (mode == "length") {
    append(wire::RecordHeader{static_cast<std::uint32_t>(wire::RecordType::result_data),
                              0xFFFFFFF0u, job_id});
    published = 64;
  } else if (mode == "job_id") {
    append(wire::RecordHeader{static_cast<std::uint32_t>(wire::RecordType::result_start),
                              sizeof(wire::ResultStartBody), job_id + 1000});
    append(wire::ResultStartBody{0, 0, 0});
    published = record.size();
  } else {
    throw std::runtime_error("garbage: expected random, length or job_id, got \"" + mode + "\"");
  }
  const std::uint64_t at = ring.write_pos.load();
  for (std::size_t i = 0; i < record.size(); ++i)
    data[(at + i) & (capacity - 1)] = record[i];
  ring.write_pos.store(at + published);
  ring_doorbell();
  hang_forever();
}

}  // namespace

void add_wire_garbage_job(procpool::JobRegistry& jobs) {
  jobs.add("garbage",
           [](procpool::JobContext& context, std::span<const std::byte> in) -> procpool::Bytes {
             write_malformed_record(
                 std::string(reinterpret_cast<const char*>(in.data()), in.size()),
                 context.job_id());
           });
}

}  // namespace bench
