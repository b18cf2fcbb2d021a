// getting_started: the program docs/getting-started.md walks through, step by step. Every C++
// block of that guide is a piece of this file (the test docs.getting_started_snippets checks it),
// and the test examples.getting_started runs it: it exits non-zero if any outcome is not the one
// the guide promises.
#include <procpool/procpool.hpp>

#include <cctype>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace {

int failures = 0;

void expect(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "getting_started: FAILED: %s\n", what);
    ++failures;
  }
}

procpool::Bytes to_bytes(std::string_view text) {
  const auto* first = reinterpret_cast<const std::byte*>(text.data());
  return procpool::Bytes(first, first + text.size());
}

std::string to_text(std::span<const std::byte> bytes) {
  return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

// A typed job names itself and its request and response types; procpool::Codec encodes them.
// Trivially copyable types travel as their bytes, std::string as its characters.
struct Size {
  int width = 0;
  int height = 0;
};

struct Thumbnail {
  static constexpr std::string_view name = "thumbnail";
  using Request = Size;
  using Response = std::string;
};

// The jobs a worker can run. Host and workers build the same registry: the workers are this same
// program, started again by the pool.
procpool::JobRegistry make_registry() {
  procpool::JobRegistry jobs;

  // An untyped job: bytes in, bytes out.
  jobs.add("upper", [](procpool::JobContext&, std::span<const std::byte> in) {
    procpool::Bytes out(in.begin(), in.end());
    for (std::byte& b : out)
      b = static_cast<std::byte>(std::toupper(static_cast<unsigned char>(b)));
    return out;
  });

  // A typed job: the handler sees a Size and returns a std::string.
  jobs.add<Thumbnail>([](procpool::JobContext& context, const Size& size) {
    return std::to_string(size.width) + "x" + std::to_string(size.height) + " thumbnail by job " +
           std::to_string(context.job_id());
  });

  // A handler that throws: the job fails with ErrorKind::handler_error; the worker lives on.
  jobs.add("reject", [](procpool::JobContext&, std::span<const std::byte>) -> procpool::Bytes {
    throw std::runtime_error("the SDK refused the input");
  });

  // Native code that takes its process down: the job fails with ErrorKind::worker_crashed and
  // the pool starts a replacement worker.
  jobs.add("crash", [](procpool::JobContext&, std::span<const std::byte>) -> procpool::Bytes {
    std::_Exit(42);
  });
  return jobs;
}

}  // namespace

int main(int argc, char** argv) {
  procpool::JobRegistry jobs = make_registry();
  // In a worker this runs the job loop and returns its exit code; in the host it returns nullopt
  // at once. It comes first, before the host starts threads or reads its configuration.
  if (auto rc = procpool::run_worker_if_requested(argc, argv, jobs)) return *rc;

  procpool::PoolOptions options;
  options.workers = 2;
  options.recycle.max_jobs = 1000;                               // a fresh worker every 1000 jobs
  options.recycle.memory_soft_limit = std::uint64_t{512} << 20;  // retire after a job above 512 MiB
  options.recycle.memory_hard_limit = std::uint64_t{1} << 30;    // kill at once above 1 GiB
  options.job_timeout = std::chrono::seconds(30);
  procpool::Pool pool(options);

  // Submit a job and wait for its outcome.
  procpool::JobFuture future = pool.submit("upper", to_bytes("hello"));
  procpool::JobResult result = future.get();
  if (result.ok()) std::printf("upper -> %s\n", to_text(result.value()).c_str());
  expect(result.ok() && to_text(result.value()) == "HELLO", "upper returns HELLO");

  // A typed job: the future decodes the response.
  procpool::Result<std::string> thumbnail = pool.submit<Thumbnail>(Size{640, 480}).get();
  if (thumbnail.ok()) std::printf("thumbnail -> %s\n", thumbnail.value().c_str());
  expect(thumbnail.ok() && thumbnail.value().starts_with("640x480"), "thumbnail is 640x480");

  // Run one job and wait for it in one call: a free worker gets it from this thread directly.
  procpool::JobResult called = pool.call("upper", to_bytes("called"));
  if (called.ok()) std::printf("upper -> %s\n", to_text(called.value()).c_str());
  expect(called.ok() && to_text(called.value()) == "CALLED", "call returns CALLED");

  // Failures are values: each job ends in exactly one outcome, a result or a JobError.
  for (const char* name : {"reject", "crash", "no-such-job"}) {
    procpool::JobResult r = pool.submit(name, procpool::Bytes{}).get();
    if (r.ok()) continue;
    const procpool::JobError& error = r.error();
    std::printf("%s -> %s: %s\n", name, std::string(procpool::to_string(error.kind)).c_str(),
                error.message.c_str());
    if (error.kind == procpool::ErrorKind::worker_crashed && error.exit_code)
      std::printf("  the worker exited with %d\n", *error.exit_code);
  }

  // Retry a job whose worker dies, if running it twice is harmless.
  procpool::SubmitOptions retry;
  retry.idempotent = true;
  retry.max_attempts = 2;
  retry.timeout = std::chrono::seconds(5);
  procpool::JobResult retried = pool.submit("crash", procpool::Bytes{}, retry).get();
  expect(!retried.ok() && retried.error().kind == procpool::ErrorKind::worker_crashed &&
             retried.error().attempts == 2,
         "crash is tried twice, then fails with worker_crashed");

  // A completion callback instead of a future (it runs on the pool's thread: keep it short).
  std::promise<std::string> done;
  pool.submit("upper", to_bytes("callback"), {}, [&done](procpool::JobResult r) {
    done.set_value(r.ok() ? to_text(r.value()) : r.error().message);
  });
  expect(done.get_future().get() == "CALLBACK", "the callback gets CALLBACK");

  // Many small jobs in one call.
  std::vector<procpool::JobFuture> batch =
      pool.submit_batch("upper", {to_bytes("a"), to_bytes("b"), to_bytes("c")});
  for (procpool::JobFuture& f : batch)
    expect(f.get().ok(), "every batch job succeeds");

  // What the pool is doing, for logs, dashboards and scrapers.
  procpool::PoolStats stats = pool.stats();
  std::printf("%llu jobs succeeded, %llu failed (%llu crashed a worker), %zu workers\n",
              static_cast<unsigned long long>(stats.succeeded),
              static_cast<unsigned long long>(stats.failed),
              static_cast<unsigned long long>(stats.failures(procpool::ErrorKind::worker_crashed)),
              stats.workers.size());
  for (const procpool::JobStats& job : stats.jobs)
    std::printf("  %-10s p99 %.1f ms, memory per job %+.0f bytes\n", job.name.c_str(),
                job.latency_p99_ms, job.memory_delta_mean_bytes);
  std::string json = procpool::to_json(stats);              // for an HTTP status endpoint
  std::string prometheus = procpool::to_prometheus(stats);  // for a /metrics endpoint
  expect(stats.failures(procpool::ErrorKind::handler_error) == 1, "one handler_error counted");
  expect(!json.empty() && !prometheus.empty(), "stats render");

  // Stop taking jobs, let running ones finish for up to 5 s, stop and reap every worker.
  pool.shutdown(std::chrono::seconds(5));

  if (failures != 0) return 1;
  std::printf("getting_started: every outcome was the expected one\n");
  return 0;
}
