// The shared-memory channel between the supervisor and one worker: segment layout and wire format.
//
//   segment = SegmentHeader | request ring data | response ring data
//
// Each ring is a single-producer/single-consumer byte ring of `ring_bytes` (a power of two). The
// stream in it is a sequence of records, each an 8-byte-aligned RecordHeader followed by `length`
// body bytes padded to 8. A record may wrap around the end of the ring. A producer publishes only
// whole records, so a reader that sees part of one has found corruption.
//
// Positions are byte counts since the start, never reduced modulo the capacity, so
// `write_pos - read_pos` is the fill level. Each side writes only its own fields: the producer
// write_pos/write_seq/producer_waiting, the consumer read_pos/read_seq/consumer_waiting.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace procpool::detail {

inline constexpr std::uint32_t segment_magic = 0x70707367;  // "ppsg"
/// 2: the segment is an inherited descriptor, no longer a name in /dev/shm.
/// 3: SegmentHeader::host_cpu and worker_cpu.
/// 4: RingControl::consumer_waiting is a set of wake_by_* bits.
/// 5: a fork server request may carry a fifth descriptor, the worker's cgroup.procs.
/// 6: SegmentHeader::job_claims (job_claims.hpp).
/// 7: JobFlags::job_flag_lent_kept_accessible.
/// 8: SegmentHeader::stop_requested_job.
inline constexpr std::uint32_t protocol_version = 8;

/// How a waiting consumer wants to be woken (RingControl::consumer_waiting bits). The worker's
/// request ring uses only wake_by_default (a futex wake on write_seq). On a response ring,
/// wake_by_default rings the worker's doorbell (the supervisor's epoll) and wake_by_futex is a
/// futex wake on write_seq, for a thread waiting in Pool::call; both may be set.
inline constexpr std::uint32_t wake_by_default = 1;
inline constexpr std::uint32_t wake_by_futex = 2;

struct RingControl {
  // Producer's fields.
  alignas(64) std::atomic<std::uint64_t> write_pos{0};
  /// Incremented on every publish; the consumer's futex word.
  std::atomic<std::uint32_t> write_seq{0};
  /// 1 while the producer waits for space. Set and cleared by the producer only.
  std::atomic<std::uint32_t> producer_waiting{0};
  // Consumer's fields.
  alignas(64) std::atomic<std::uint64_t> read_pos{0};
  /// Incremented on every release; the producer's futex word.
  std::atomic<std::uint32_t> read_seq{0};
  /// wake_by_* bits while the consumer waits for data, 0 otherwise. Set and cleared by the
  /// consumer only.
  std::atomic<std::uint32_t> consumer_waiting{0};
};

static_assert(std::atomic<std::uint64_t>::is_always_lock_free,
              "rings need lock-free 64-bit atomics");
static_assert(std::atomic<std::uint32_t>::is_always_lock_free,
              "rings need lock-free 32-bit atomics");

struct SegmentHeader {
  std::uint32_t magic = segment_magic;
  std::uint32_t version = protocol_version;
  std::uint64_t segment_bytes = 0;
  std::uint64_t ring_bytes = 0;
  std::uint64_t max_payload_bytes = 0;
  std::uint64_t max_result_bytes = 0;
  /// RLIMIT_AS the worker applies to itself before it reports ready; 0 = none.
  std::uint64_t address_space_limit = 0;
  std::int32_t host_pid = 0;
  /// WorkerFlags the worker applies to itself before it reports ready (0 in hosts before they
  /// existed).
  std::uint32_t worker_flags = 0;
  /// How long the worker polls its request ring after each result before it sleeps (SpinPolicy);
  /// 0 = never.
  std::uint32_t spin_budget_ns = 0;
  /// Host to worker, updated as jobs start and end: 1 while fewer workers of the pool run jobs or
  /// start up than the machine has CPUs, so that a worker polling for its next request likely has a
  /// CPU of its own; 0 otherwise (the worker then sleeps at once).
  std::atomic<std::uint32_t> spin_hint{0};
  /// The CPU the supervisor thread last ran on as it went to wait, and the one the worker last ran
  /// on as it went to wait (-1: not known). A poller never polls for a peer that last ran on its
  /// own CPU: the peer needs that CPU to answer, and a yield does not reliably hand it over.
  std::atomic<std::int32_t> host_cpu{-1};
  std::atomic<std::int32_t> worker_cpu{-1};
  /// Worker to host, before its first job: the pids of its guard's short-lived parent and of its
  /// guard (platform::start_process_group_guard), 0 if none. Orphans from the start, they are the
  /// host's children in a host that adopts orphans (a child subreaper), which reaps them after the
  /// worker (platform::reap_worker). Untrusted like all the worker writes: the host reaps only a
  /// child of its own in the worker's process group.
  std::atomic<std::int32_t> guard_starter_pid{0};
  std::atomic<std::int32_t> guard_pid{0};
  /// Host to worker: the number of the job_start record whose job is asked to stop
  /// (Pool::cancel with CancelMode::interrupt; JobContext::stop_requested), 0 for none. A number
  /// rather than a flag, so that a request never outlives its job.
  std::atomic<std::uint32_t> stop_requested_job{0};
  /// Which job_start records the worker may still run: both sides, compare-and-swap only
  /// (job_claims.hpp). The worker changes it for every job: a line of its own, so that it does
  /// not take the fields above from the host's cache each time.
  alignas(64) std::atomic<std::uint64_t> job_claims{0};
  /// Host to worker: jobs.
  RingControl requests;
  /// Worker to host: hello and results.
  RingControl responses;
};

/// Bits of SegmentHeader::worker_flags.
enum WorkerFlags : std::uint32_t {
  /// PR_SET_DUMPABLE 0 (WorkerSecurity::dumpable = false).
  worker_flag_non_dumpable = 1,
};

inline constexpr std::size_t segment_header_bytes = (sizeof(SegmentHeader) + 63) / 64 * 64;

inline constexpr std::size_t segment_bytes_for(std::size_t ring_bytes) {
  return segment_header_bytes + 2 * ring_bytes;
}

enum class RecordType : std::uint32_t {
  // Host to worker.
  job_start = 1,  ///< body: JobStartBody, then the job name
  job_data = 2,   ///< body: the next bytes of the payload
  stop = 3,       ///< no body: finish and exit 0
  // Worker to host.
  hello = 16,         ///< body: HelloBody; sent once, after attaching
  result_start = 17,  ///< body: ResultStartBody
  result_data = 18,   ///< body: the next bytes of the result (or of the error message)
};

struct RecordHeader {
  std::uint32_t type = 0;
  std::uint32_t length = 0;  ///< body bytes, excluding padding
  std::uint64_t job_id = 0;
};
static_assert(sizeof(RecordHeader) == 16);

inline constexpr std::uint64_t record_alignment = 8;

constexpr std::uint64_t padded(std::uint64_t n) {
  return (n + record_alignment - 1) & ~(record_alignment - 1);
}

struct JobStartBody {
  /// Bytes of payload that follow in job_data records; for an in-place job, the size of its input
  /// buffer instead (no job_data records follow).
  std::uint64_t payload_bytes = 0;
  /// Per-job timeout in milliseconds, 0 = none (informational for JobContext::deadline).
  std::int64_t timeout_ms = 0;
  std::uint32_t attempt = 1;
  std::uint32_t name_bytes = 0;
  /// JobFlags.
  std::uint32_t flags = 0;
  std::uint32_t reserved = 0;
  /// For an in-place job: the size of its output buffer.
  std::uint64_t output_bytes = 0;
};

static_assert(sizeof(JobStartBody) == 40, "JobStartBody is part of the wire format");

/// Bits of JobStartBody::flags.
enum JobFlags : std::uint32_t {
  /// The job's input and output are lent buffers whose descriptors (input read-only, then output)
  /// the host sent on the worker's descriptor channel just before this record. The result is the
  /// number of bytes written to the output, as a std::uint64_t.
  job_flag_in_place = 1,
  /// With job_flag_in_place: leave the buffers accessible after the job
  /// (LentBuffersAfterJob::kept_accessible).
  job_flag_lent_kept_accessible = 2,
};

/// Longest job name on the wire.
inline constexpr std::uint32_t max_job_name_bytes = 255;

enum class ResultStatus : std::uint32_t {
  ok = 0,
  handler_error = 1,
  unknown_job = 2,
  codec_error = 3,
  result_too_large = 4,
};

struct ResultStartBody {
  std::uint32_t status = 0;
  std::uint32_t reserved = 0;
  /// Bytes of result (status ok) or of error message (otherwise) that follow in result_data
  /// records.
  std::uint64_t bytes = 0;
};

/// Longest error message a worker may send.
inline constexpr std::uint64_t max_error_message_bytes = 64 * 1024;

struct HelloBody {
  std::uint32_t version = protocol_version;
  std::int32_t pid = 0;
};

/// Largest record body: a quarter of the ring, so a producer can refill while the consumer drains.
constexpr std::uint64_t max_record_body(std::uint64_t ring_bytes) {
  return ring_bytes / 4 - sizeof(RecordHeader);
}

}  // namespace procpool::detail
