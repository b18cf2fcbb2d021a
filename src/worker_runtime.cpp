// The worker side of the channel: attach, say hello, run jobs until told to stop.
#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>
#include <optional>
#include <string_view>
#include <type_traits>
#include <vector>

#include "adaptive_spin.hpp"
#include "channel/job_claims.hpp"
#include "channel/layout.hpp"
#include "channel/ring.hpp"
#include "channel/segment.hpp"
#include "channel/shared_mapping.hpp"
#include "platform/platform.hpp"
#include "procpool/worker.hpp"
#include "worker_args.hpp"

namespace procpool {

namespace detail {

std::optional<WorkerArgs> parse_worker_args(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::string_view(argv[i]) != worker_flag) continue;
    // From here on this is a worker: arguments it cannot read leave their fields 0, which
    // run_worker reports, rather than running the program as if it were not one.
    WorkerArgs args;
    auto parse = [&](int at, auto& value) {
      if (at >= argc) return;
      std::string_view text = argv[at];
      auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
      if (ec != std::errc() || end != text.data() + text.size()) value = 0;
    };
    parse(i + 1, args.protocol);
    parse(i + 2, args.host_pid);
    if (i + 3 < argc && std::string_view(argv[i + 3]) == fork_server_flag) {
      args.fork_server = argv[i + 3];
    }
    return args;
  }
  return std::nullopt;
}

namespace {

void report_unguarded(const char* failed_call) {
  std::fprintf(stderr, "procpool worker: cannot guard its process group (%s: %s)\n", failed_call,
               std::strerror(errno));
}

void report_host_unwatched() {
  std::fprintf(stderr,
               "procpool worker: cannot open a pidfd of the host (pidfd_open: %s); checking it "
               "once a second instead\n",
               std::strerror(errno));
}

// The largest request buffer a worker keeps for the next job. Bigger ones are freed after their
// job, so that one huge request does not stay in the worker's memory (where it would count against
// the memory limits) until the worker is recycled.
constexpr std::size_t max_retained_payload_bytes = std::size_t{64} << 20;

// Runs in the worker process. The host is trusted here (it created the segment); what is checked is
// checked to fail loudly rather than to defend.
class WorkerLoop {
 public:
  /// `guard_starter`: what start_process_group_guard() returned (-1: no guard to confirm).
  /// `host_pid`: the host, this process's parent. `guard_watches_host`: the guard was given a
  /// pidfd of the host (it kills this process's group once the host has died).
  WorkerLoop(Segment& segment, const JobRegistry& registry, int guard_starter, int host_pid,
             bool guard_watches_host)
      : segment_(segment),
        registry_(registry),
        guard_starter_(guard_starter),
        host_pid_(host_pid),
        // When the host is pid 1 (a container's init), the kernel SIGKILLs every process in its pid
        // namespace, this one included, once it dies (pid_namespaces(7)): nothing to check.
        check_host_by_timer_(!guard_watches_host && host_pid != 1),
        requests_(&segment.header().requests, segment.request_data(), segment.ring_bytes()),
        responses_(&segment.header().responses, segment.response_data(), segment.ring_bytes()),
        max_body_(max_record_body(segment.ring_bytes())),
        spin_(std::chrono::nanoseconds(
            std::min<std::uint32_t>(segment.header().spin_budget_ns, max_spin_budget_ns))),
        space_spin_(spin_) {}

  int run() {
    HelloBody hello{protocol_version, platform::current_pid()};
    send(RecordType::hello, 0, as_bytes(hello));
    flush();
    // While the host takes the hello: the guard must be running before any job does.
    if (guard_starter_ >= 0) {
      if (const char* failed = platform::finish_process_group_guard(guard_starter_)) {
        report_unguarded(failed);
        check_host_by_timer_ = host_pid_ != 1;
      }
    }
    for (;;) {
      RecordView record = next_record();
      auto type = static_cast<RecordType>(record.header.type);
      if (type == RecordType::stop) return 0;
      if (type != RecordType::job_start) fail("unexpected record from the host");
      run_job(record);
    }
  }

 private:
  template <class T>
  static std::span<const std::byte> as_bytes(const T& value) {
    return {reinterpret_cast<const std::byte*>(&value), sizeof value};
  }

  [[noreturn]] static void fail(const char* what) {
    std::fprintf(stderr, "procpool worker: %s; exiting\n", what);
    std::fflush(stderr);
    std::_Exit(4);
  }

  RecordView next_record() {
    RecordView record;
    for (;;) {
      switch (requests_.peek(record, max_body_)) {
        case ReadStatus::ready:
          return record;
        case ReadStatus::corrupt:
          fail("corrupt request ring");
        case ReadStatus::empty:
          break;
      }
      // Space held back while a payload streamed in from the host on this CPU (consume): it
      // must go back before this process waits, or both sides would wait for each other.
      if (requests_.release()) platform::eventfd_notify(platform::worker_doorbell_fd);
      // The host's next request often comes within microseconds of the last result.
      if (may_poll() && spin_.poll([this] { return requests_.has_data(); })) {
        continue;
      }
      std::uint32_t seen = requests_.begin_wait();
      if (!requests_.has_data()) wait_on_host(requests_.wait_word(), seen);
      requests_.end_wait();
    }
  }

  // Sleeps while `word` holds `seen` (the host's next request, or ring space). The parent-death
  // signal does not alone end this process when the host dies: the kernel clears it when a job
  // changes this process's credentials (setuid, setgid, capset: a native SDK dropping
  // privileges). The guard, which watches the host, does; without one (it could not be started),
  // the wait wakes every host_check_period to see that the host is still this process's parent,
  // and exits if it is not.
  void wait_on_host(const std::atomic<std::uint32_t>& word, std::uint32_t seen) {
    if (!check_host_by_timer_) {
      platform::futex_wait(word, seen);
      return;
    }
    while (word.load(std::memory_order_acquire) == seen) {
      platform::futex_wait(word, seen, host_check_period);
      if (word.load(std::memory_order_acquire) == seen && !platform::parent_is(host_pid_)) {
        std::_Exit(3);  // nobody is left to tell
      }
    }
  }

  // `batch`: a record of a payload streaming in from a host on this CPU, whose space goes back
  // when this process next waits (next_record) rather than now, so that the host, which would
  // take the CPU at once, refills a ringful rather than one record at a time.
  void consume(const RecordView& record, bool batch = false) {
    requests_.consume(record);
    if (!batch && requests_.release()) platform::eventfd_notify(platform::worker_doorbell_fd);
  }

  void run_job(const RecordView& start) {
    JobStartBody body;
    if (start.header.length < sizeof body) fail("short job_start record");
    requests_.copy_body(start, 0, &body, sizeof body);
    if (body.name_bytes > max_job_name_bytes ||
        sizeof body + body.name_bytes != start.header.length ||
        body.payload_bytes > segment_.header().max_payload_bytes ||
        (body.flags & ~std::uint32_t{job_flag_in_place | job_flag_lent_kept_accessible}) != 0 ||
        body.output_bytes > segment_.header().max_result_bytes) {
      fail("malformed job_start record");
    }
    std::string name(body.name_bytes, '\0');
    requests_.copy_body(start, sizeof body, name.data(), body.name_bytes);
    std::uint64_t job_id = start.header.job_id;
    std::optional<bool> claimed = claim_job(segment_.header().job_claims, ++job_starts_read_);
    if (!claimed) fail("the job claims in the segment are out of step with the request ring");
    consume(start);
    if (!*claimed) {
      skip_job(job_id, body);
      return;
    }
    if (body.flags & job_flag_in_place) {
      run_in_place(job_id, name, body);
      return;
    }

    Bytes& payload = payload_;
    payload.clear();
    payload.reserve(body.payload_bytes);
    while (payload.size() < body.payload_bytes) {
      RecordView data = next_record();
      if (data.header.type != static_cast<std::uint32_t>(RecordType::job_data) ||
          data.header.job_id != job_id ||
          data.header.length > body.payload_bytes - payload.size()) {
        fail("malformed job_data record");
      }
      requests_.append_body(data, payload);
      consume(data, payload.size() < body.payload_bytes && shares_host_cpu());
    }

    std::optional<std::chrono::steady_clock::time_point> deadline;
    if (body.timeout_ms > 0) {
      deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(body.timeout_ms);
    }
    JobContext context(name, job_id, body.attempt, jobs_done_, deadline,
                       &segment_.header().stop_requested_job, job_starts_read_);
    const JobHandler* handler = registry_.find(name);
    const OwningJobHandler* owning = handler ? nullptr : registry_.find_owning(name);
    if (!handler && !owning) {
      reply(job_id, ResultStatus::unknown_job,
            "no job named '" + name + "' is registered in this worker");
      return;
    }
    std::optional<Bytes> result = call_handler(job_id, [&] {
      return handler ? (*handler)(context, payload) : (*owning)(context, std::move(payload_));
    });
    if (!result) return;
    if (result->size() > segment_.header().max_result_bytes) {
      reply(job_id, ResultStatus::result_too_large,
            "the result is " + std::to_string(result->size()) + " bytes, over max_result_bytes (" +
                std::to_string(segment_.header().max_result_bytes) + ")");
      return;
    }
    reply(job_id, ResultStatus::ok, *result);
    // An owning handler took the request buffer; its result (often that buffer) is the next one,
    // pages already faulted in, if it is no smaller and not too big to keep.
    if (owning && result->capacity() > payload_.capacity() &&
        result->capacity() <= max_retained_payload_bytes) {
      payload_ = std::move(*result);
    }
  }

  // A job the host took back before this process read it (job_claims.hpp): it is passed over
  // with its payload, and nothing is sent for it.
  void skip_job(std::uint64_t job_id, const JobStartBody& body) {
    if (body.flags & job_flag_in_place) {
      // Its buffers were sent before its record: taken off the channel and closed.
      platform::receive_descriptors(platform::worker_channel_fd, 2);
      return;
    }
    std::uint64_t left = body.payload_bytes;
    while (left > 0) {
      RecordView data = next_record();
      if (data.header.type != static_cast<std::uint32_t>(RecordType::job_data) ||
          data.header.job_id != job_id || data.header.length > left) {
        fail("malformed job_data record");
      }
      left -= data.header.length;
      consume(data);
    }
  }

  // An in-place job: the handler works on the lent buffers themselves, mapped here and accessible
  // only while it runs (LentBuffersAfterJob).
  void run_in_place(std::uint64_t job_id, const std::string& name, const JobStartBody& body) {
    // Sent just before the record, so already waiting on the channel.
    std::vector<platform::UniqueFd> buffers =
        platform::receive_descriptors(platform::worker_channel_fd, 2);
    if (buffers.size() != 2) fail("an in-place job came without its two buffers");
    auto input_file = platform::file_info(buffers[0].get());
    auto output_file = platform::file_info(buffers[1].get());
    if (!input_file || input_file->size < body.payload_bytes || !output_file ||
        output_file->size < body.output_bytes) {
      fail("an in-place job's buffers are smaller than announced");
    }
    const InPlaceHandler* handler = registry_.find_in_place(name);
    if (!handler) {
      reply(job_id, ResultStatus::unknown_job,
            registry_.find(name) || registry_.find_owning(name)
                ? "'" + name +
                      "' is registered in this worker as a job, not as an in-place job "
                      "(JobRegistry::add_in_place)"
                : "no in-place job named '" + name + "' is registered in this worker");
      return;
    }
    std::optional<std::chrono::steady_clock::time_point> deadline;
    if (body.timeout_ms > 0) {
      deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(body.timeout_ms);
    }
    JobContext context(name, job_id, body.attempt, jobs_done_, deadline,
                       &segment_.header().stop_requested_job, job_starts_read_);
    std::optional<std::size_t> written = call_handler(job_id, [&] {
      // From the handler's return (or throw) on, before the outcome says the caller owns the
      // buffers again, nothing in this process can read or write them (unless the pool says to
      // keep them accessible).
      LentBuffersClosedOnExit closed_on_exit{*this,
                                             (body.flags & job_flag_lent_kept_accessible) == 0};
      const std::byte* input =
          open_lent(buffers[0].get(), *input_file, SharedMapping::Access::read_only);
      std::byte* output =
          open_lent(buffers[1].get(), *output_file, SharedMapping::Access::read_write);
      buffers.clear();  // the mappings stay; a job's children must not inherit the descriptors
      return (*handler)(context, std::span<const std::byte>(input, body.payload_bytes),
                        std::span<std::byte>(output, body.output_bytes));
    });
    if (!written) return;
    if (*written > body.output_bytes) {
      reply(job_id, ResultStatus::result_too_large,
            "the in-place handler says it wrote " + std::to_string(*written) +
                " bytes into an output buffer of " + std::to_string(body.output_bytes));
      return;
    }
    std::uint64_t size = *written;
    reply(job_id, ResultStatus::ok, as_bytes(size));
  }

  // Runs a handler; if it throws, replies with the error that matches and returns nullopt.
  template <class Call>
  std::optional<std::invoke_result_t<Call&>> call_handler(std::uint64_t job_id, Call&& call) {
    try {
      return call();
    } catch (const CodecError& e) {
      reply(job_id, ResultStatus::codec_error,
            std::string("cannot decode the request: ") + e.what());
    } catch (const std::exception& e) {
      reply(job_id, ResultStatus::handler_error, e.what());
    } catch (...) {
      reply(job_id, ResultStatus::handler_error, "the handler threw a non-std::exception");
    }
    return std::nullopt;
  }

  // The address of the whole lent buffer `fd` names, mapped with `access` and accessible until
  // close_lent(). The last few buffers used stay mapped between their jobs, inaccessible unless
  // the pool keeps them accessible (lent buffers are reused): mapping 16 MiB and unmapping it again
  // costs more than changing what the mapping allows. A buffer has one mapping here at most, with
  // its current job's access: an input is writable through none. A buffer is known by its file's
  // device and inode (since Linux 5.9 memfds are numbered from a 64-bit counter, never reused
  // before a reboot), never by its descriptor's number, which is the same for every job.
  std::byte* open_lent(int fd, const platform::FileInfo& file, SharedMapping::Access access) {
    for (auto it = lent_mappings_.begin(); it != lent_mappings_.end(); ++it) {
      if (it->device != file.device || it->inode != file.inode) continue;
      if (it->access == access && it->mapping.size() == file.size &&
          (it->accessible || platform::protect_memory(it->mapping.data(), it->mapping.size(),
                                                      memory_access(access)))) {
        it->accessible = true;
        std::rotate(lent_mappings_.begin(), it, it + 1);  // most recently used first
        return lent_mappings_.front().mapping.data();
      }
      lent_mappings_.erase(it);  // the other access, or no longer usable: unmapped, mapped afresh
      break;
    }
    // Populated: the pages exist already (the host wrote them or mapped them); setting them all
    // up at once costs less than a fault per page.
    LentMapping fresh{file.device, file.inode, access,
                      SharedMapping::map(fd, file.size, access, true), true};
    if (lent_mappings_.size() == max_lent_mappings) lent_mappings_.pop_back();
    lent_mappings_.insert(lent_mappings_.begin(), std::move(fresh));
    return lent_mappings_.front().mapping.data();
  }

  // Makes every lent buffer mapped here inaccessible; one that cannot be (no memory for the
  // change) is unmapped.
  void close_lent() noexcept {
    std::erase_if(lent_mappings_, [](LentMapping& lent) {
      if (!lent.accessible) return false;
      lent.accessible = false;
      return !platform::protect_memory(lent.mapping.data(), lent.mapping.size(),
                                       platform::MemoryAccess::none);
    });
  }

  // Calls close_lent() when it goes out of scope, if `close`.
  struct LentBuffersClosedOnExit {
    WorkerLoop& loop;
    bool close;
    ~LentBuffersClosedOnExit() {
      if (close) loop.close_lent();
    }
  };

  static platform::MemoryAccess memory_access(SharedMapping::Access access) noexcept {
    return access == SharedMapping::Access::read_only ? platform::MemoryAccess::read
                                                      : platform::MemoryAccess::read_write;
  }

  void reply(std::uint64_t job_id, ResultStatus status, std::string_view message) {
    message = message.substr(0, max_error_message_bytes);
    reply(job_id, status,
          std::span<const std::byte>(reinterpret_cast<const std::byte*>(message.data()),
                                     message.size()));
  }

  // `bytes` must not point into payload_, which is freed here if it is big.
  void reply(std::uint64_t job_id, ResultStatus status, std::span<const std::byte> bytes) {
    if (payload_.capacity() > max_retained_payload_bytes) {
      payload_ = Bytes();  // a big request: free it before the result is copied out
    }
    ResultStartBody start{static_cast<std::uint32_t>(status), 0, bytes.size()};
    send(RecordType::result_start, job_id, as_bytes(start));
    for (std::size_t offset = 0; offset < bytes.size();) {
      std::size_t n = std::min<std::size_t>(bytes.size() - offset, max_body_);
      send(RecordType::result_data, job_id, bytes.subspan(offset, n));
      offset += n;
      // A result of several records: publish each, so the host copies one out while the next is
      // copied in; to a host on this CPU, a ringful at a time (send publishes when it is full).
      if (offset < bytes.size() && !shares_host_cpu()) flush();
    }
    ++jobs_done_;
    flush();
  }

  // Appends a record, publishing what is pending and waiting for the host to make room if needed.
  void send(RecordType type, std::uint64_t job_id, std::span<const std::byte> body) {
    const std::uint64_t needed = RingWriter::record_bytes(body.size());
    auto has_space = [&] {
      auto space = responses_.free_bytes();
      return !space || *space >= needed;  // an impossible position: failed below
    };
    while (!responses_.append(type, job_id, body)) {
      flush();
      // A result streaming out: the host frees a record's space in less time than waking this
      // process takes.
      if (may_poll() && space_spin_.poll(has_space)) {
        continue;
      }
      std::uint32_t seen = responses_.begin_wait();
      auto space = responses_.free_bytes();
      if (!space) fail("corrupt response ring");
      if (*space < needed) wait_on_host(responses_.wait_word(), seen);
      responses_.end_wait();
    }
  }

  // Whether a CPU is likely free to poll on, and the supervisor thread is not on this one (it
  // would need it to answer). Tells the host which CPU this worker waits on.
  bool may_poll() noexcept {
    SegmentHeader& header = segment_.header();
    const int cpu = platform::current_cpu();
    header.worker_cpu.store(cpu, std::memory_order_relaxed);
    return header.spin_hint.load(std::memory_order_relaxed) != 0 && !on_host_cpu(cpu);
  }

  // Whether `cpu` is the one the host thread this worker answers to (the supervisor thread, or a
  // Pool::call thread) last ran on; false if either is unknown.
  bool on_host_cpu(int cpu) noexcept {
    const int host = segment_.header().host_cpu.load(std::memory_order_relaxed);
    return host >= 0 && cpu == host;
  }
  bool shares_host_cpu() noexcept { return on_host_cpu(platform::current_cpu()); }

  void flush() {
    const std::uint32_t wake = responses_.publish();
    if (wake & wake_by_default) platform::eventfd_notify(platform::worker_doorbell_fd);
    if (wake & wake_by_futex) platform::futex_wake_all(responses_.wake_word());
  }

  Segment& segment_;
  const JobRegistry& registry_;
  int guard_starter_;
  const int host_pid_;
  // Whether waits on the host wake every host_check_period to check it is alive: only where no
  // guard watches it. A period bounds how long such a worker outlives a host whose death it was
  // not told of, and costs an idle worker one wake-up (120-160 us of CPU each on the test VM,
  // docs/benchmarks.md).
  bool check_host_by_timer_;
  static constexpr std::chrono::seconds host_check_period{1};
  RingReader requests_;
  RingWriter responses_;
  std::uint64_t max_body_;
  // SpinPolicy::budget's ceiling: the header is the host's word, but a worker never polls longer.
  static constexpr std::uint32_t max_spin_budget_ns = 1'000'000;
  AdaptiveSpin spin_;        // for the next request
  AdaptiveSpin space_spin_;  // for space in the response ring
  std::uint64_t jobs_done_ = 0;
  // Lent buffers mapped for in-place jobs, most recently used first; accessible only while the
  // job that uses them runs, unless the pool keeps them accessible.
  struct LentMapping {
    std::uint64_t device = 0;
    std::uint64_t inode = 0;
    SharedMapping::Access access = SharedMapping::Access::read_only;
    SharedMapping mapping;
    bool accessible = false;
  };
  /// job_start records read so far: the number of the last one (job_claims.hpp).
  std::uint32_t job_starts_read_ = 0;
  static constexpr std::size_t max_lent_mappings = 4;
  std::vector<LentMapping> lent_mappings_;
  // The request being received. Kept between jobs so that the next one of a similar size lands in
  // memory that is already mapped: a fresh buffer costs a page fault and a page clear per 4 KiB,
  // which for large payloads is more than the copy itself.
  Bytes payload_;
};

}  // namespace

bool accept_worker_args(const WorkerArgs& args) {
  if (args.protocol != protocol_version || args.host_pid <= 0) {
    std::fprintf(stderr,
                 "procpool worker: unreadable %s arguments (protocol %u expected): host and worker "
                 "built from different procpool versions?\n",
                 worker_flag, protocol_version);
    return false;
  }
  if (!platform::die_with_parent(args.host_pid)) {
    std::fprintf(stderr, "procpool worker: the host (pid %d) is gone; exiting\n", args.host_pid);
    return false;
  }
  return true;
}

int run_worker(const WorkerArgs& args, const JobRegistry& registry, WorkerOrigin origin) {
  if (!accept_worker_args(args)) return 3;
  // Our own children (a job may spawn some) must not inherit the doorbell or the channel.
  platform::set_cloexec(platform::worker_doorbell_fd);
  platform::set_cloexec(platform::worker_channel_fd);
  Segment segment;
  try {
    segment = Segment::attach(platform::UniqueFd(platform::worker_segment_fd));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "procpool worker: %s\n", e.what());
    return 3;
  }
  // Whatever a job starts dies with this worker, and this worker with its host, whatever a job
  // does to its credentials: the guard (docs/gotchas.md). Not when the host is pid 1: the guard
  // would end as the host's child, a zombie nobody reaps. Started after the attach (its pid and
  // its parent's go into the segment's header, for a host that is a child subreaper, whose
  // children they become, to reap), confirmed after the hello and before the first job
  // (WorkerLoop::run).
  int guard_starter = -1;
  bool guard_watches_host = false;
  if (args.host_pid != 1) {
    platform::UniqueFd host = platform::open_parent_pidfd(args.host_pid);
    if (!host && errno == ESRCH) {
      std::fprintf(stderr, "procpool worker: the host (pid %d) is gone; exiting\n", args.host_pid);
      return 3;
    }
    if (!host) report_host_unwatched();
    const char* failed = nullptr;
    guard_starter = platform::start_process_group_guard(
        failed, host.get(), &segment.header().guard_starter_pid, &segment.header().guard_pid);
    if (guard_starter < 0) report_unguarded(failed);
    guard_watches_host = guard_starter >= 0 && host;
  }  // the host's pidfd is closed here: the guard has its own, and no job may inherit it
  if (std::uint64_t limit = segment.header().address_space_limit) {
    if (!platform::limit_address_space(limit)) {
      std::fprintf(stderr, "procpool worker: cannot set RLIMIT_AS to %llu bytes\n",
                   static_cast<unsigned long long>(limit));
      return 3;
    }
  }
  // Before any job runs, and after exec, which made this process dumpable again, or the fork of
  // a fork server, which is not dumpable.
  const bool dumpable = (segment.header().worker_flags & worker_flag_non_dumpable) == 0;
  if ((!dumpable || origin == WorkerOrigin::fork_server) && !platform::set_dumpable(dumpable)) {
    std::fprintf(stderr, "procpool worker: cannot set PR_SET_DUMPABLE to %d\n", dumpable ? 1 : 0);
    return 3;
  }
  return WorkerLoop(segment, registry, guard_starter, args.host_pid, guard_watches_host).run();
}

}  // namespace detail

std::optional<int> run_worker_if_requested(int argc, char** argv, const JobRegistry& registry) {
  auto args = detail::parse_worker_args(argc, argv);
  if (!args) return std::nullopt;
  if (args->fork_server) return detail::run_fork_server(*args, registry);
  return detail::run_worker(*args, registry, detail::WorkerOrigin::exec);
}

int worker_main(int argc, char** argv, const JobRegistry& registry) {
  if (auto rc = run_worker_if_requested(argc, argv, registry)) return *rc;
  std::fprintf(stderr,
               "%s: this is a procpool worker executable; it is started by a procpool::Pool "
               "(PoolOptions::worker_command), not by hand\n",
               argc > 0 ? argv[0] : "worker");
  return 2;
}

}  // namespace procpool
