// procpool-transcribe-server's library: the pool its options make, the worker's jobs, and the HTTP
// routes. Transcriptions run as azure.transcribe jobs in a procpool::Pool. Flags are read in
// server_options.cpp, requests in request_parsing.cpp; errors are answered by http_errors.cpp.
#include "azure_transcription/server.hpp"

#include <httplib.h>
#include <unistd.h>
#include <procpool/pool.hpp>
#include <procpool/stats_format.hpp>

#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <thread>

#include "azure_transcription/job.hpp"
#include "azure_transcription/types.hpp"
#include "http_errors.hpp"
#include "request_parsing.hpp"

namespace procpool::azure {

namespace {

using json = nlohmann::json;
using detail::error_body;
using detail::HttpError;
using detail::send_error;
using detail::send_json;

}  // namespace

PoolOptions make_pool_options(const ServerOptions& o) {
  PoolOptions p;
  p.workers = o.workers;
  p.queue_capacity = o.queue_capacity;
  p.when_queue_full = QueueFullPolicy::reject;
  p.job_timeout = o.job_timeout;
  p.max_payload_bytes = o.max_body_bytes + (std::size_t{1} << 20);  // audio + options JSON
  p.recycle.max_jobs = o.max_jobs;
  p.recycle.max_jobs_jitter = o.max_jobs > 4 ? o.max_jobs / 4 : 0;
  p.recycle.memory_soft_limit = o.memory_soft_limit;
  p.recycle.memory_hard_limit = o.memory_hard_limit;
  p.recycle.memory_growth_limit = o.memory_growth_limit;
  p.recycle.idle_timeout = o.idle_timeout;
  p.recycle.max_lifetime = o.max_lifetime;
  p.recycle.max_lifetime_jitter = o.max_lifetime / 10;
  p.recycle.memory_metric = o.memory_metric;
  // Kernel caps where the machine allows them (else a logged fallback), and a budget that keeps
  // the workers inside the container's limit with room for the server itself.
  p.worker_cgroups.enabled =
      o.worker_cgroups && (o.worker_memory_cap > 0 || o.memory_hard_limit > 0);
  p.worker_cgroups.max_bytes = o.worker_memory_cap;
  p.worker_cgroups.parent = o.worker_cgroup_parent;
  if (o.memory_budget > 0) {
    p.memory_budget.bytes = o.memory_budget;
  } else {
    p.memory_budget.host_limit_fraction = o.memory_budget_fraction;
  }
  p.destructor_drain = o.drain;
  std::string exe = o.worker_executable;
  if (exe.empty()) {
    char buf[4096];
    ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n <= 0) throw std::runtime_error("cannot resolve /proc/self/exe");
    exe.assign(buf, static_cast<std::size_t>(n));
  }
  p.worker_command = {exe};
  if (o.simulate_leak_mb > 0) {
    p.worker_command.push_back("--simulate-native-leak-mb");
    p.worker_command.push_back(std::to_string(o.simulate_leak_mb));
  }
  if (o.log) {
    auto log = o.log;
    p.log = [log](LogLevel, std::string_view line) { log(line); };
  }
  return p;
}

JobRegistry make_worker_registry(std::size_t simulate_leak_mb) {
  JobRegistry jobs;
  jobs.add<TranscribeJob>(
      [simulate_leak_mb](JobContext& context, const TranscribeRequest& request) {
        if (simulate_leak_mb > 0) {
          // What a leaky native SDK does: memory allocated, touched and never given back.
          static std::vector<void*> leaked;
          std::size_t bytes = simulate_leak_mb << 20;
          void* block = std::malloc(bytes);
          if (block != nullptr) {
            std::memset(block, 0x5a, bytes);
            leaked.push_back(block);
          }
        }
        return worker_transcriber().transcribe(request, context.deadline());
      });
  return jobs;
}

std::size_t simulate_leak_from_argv(int argc, char** argv) {
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], "--simulate-native-leak-mb") == 0) {
      return static_cast<std::size_t>(std::strtoull(argv[i + 1], nullptr, 10));
    }
  }
  return 0;
}

// ---------------------------------------------------------------------------------------------
// The server

struct TranscribeServer::Impl {
  ServerOptions options;
  std::unique_ptr<Pool> pool;
  httplib::Server http;
  int port = 0;
  std::thread background;
  std::mutex mutex;
  std::condition_variable cv;
  bool stop_requested = false;
  bool running = false;  // run() is between its start and its end
  bool ran = false;      // run() has ended
  bool shut_down = false;

  void log(const std::string& line) {
    if (options.log) {
      options.log(line);
    } else {
      std::fprintf(stderr, "procpool-transcribe-server: %s\n", line.c_str());
    }
  }

  void transcribe(const httplib::Request& req, httplib::Response& res) {
    TranscribeRequest request;
    try {
      request = detail::parse_request(req);
    } catch (const HttpError& e) {
      send_error(res, e);
      return;
    }
    SubmitOptions submit;
    submit.idempotent = true;  // a transcription can safely run again on a fresh worker
    submit.max_attempts = options.attempts;
    Result<TranscribeResponse> result = pool->submit<TranscribeJob>(request, submit).get();
    if (result.ok()) {
      send_json(res, 200, to_json(result.value()));
    } else {
      send_error(res, detail::from_job_error(result.error()));
    }
  }

  void routes() {
    http.Post("/transcriptions", [this](const httplib::Request& req, httplib::Response& res) {
      transcribe(req, res);
    });
    http.Get("/healthz", [this](const httplib::Request&, httplib::Response& res) {
      PoolStats s = pool->stats();
      json body = {{"status", std::string(procpool::to_string(s.health))},
                   {"workers", s.workers.size()}};
      send_json(res, s.health == PoolHealth::healthy ? 200 : 503, body.dump());
    });
    http.Get("/stats", [this](const httplib::Request&, httplib::Response& res) {
      send_json(res, 200, procpool::to_json(pool->stats()));
    });
    http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      res.status = 200;
      res.set_content(procpool::to_prometheus(pool->stats()), "text/plain; version=0.0.4");
    });
    // Every error httplib produces itself (404, 405, 413, a malformed multipart body, ...) gets a
    // JSON body too.
    http.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
      if (!res.body.empty()) return;
      std::string code = res.status == 404   ? "NotFound"
                         : res.status == 413 ? "PayloadTooLarge"
                         : res.status == 405 ? "MethodNotAllowed"
                                             : "BadRequest";
      std::string message =
          res.status == 404 ? "no route " + req.method + " " + req.path
          : res.status == 413
              ? "the request body is larger than the server accepts"
              : "the request could not be read (HTTP " + std::to_string(res.status) + ")";
      send_json(res, res.status,
                error_body(HttpError{res.status, code, message, "server", json::object()}));
    });
    http.set_exception_handler(
        [this](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
          std::string what = "unknown exception";
          try {
            if (ep) std::rethrow_exception(ep);
          } catch (const std::exception& e) {
            what = e.what();
          } catch (...) {
          }
          log("internal error: " + what);
          send_json(res, 500,
                    error_body(HttpError{500, "InternalError", "internal error: " + what, "server",
                                         json::object()}));
        });
    if (!options.quiet) {
      http.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
        // Method, path and status only: never headers (a client might send a key) or bodies.
        log(req.method + " " + req.path + " " + std::to_string(res.status) + " (" +
            (req.has_header("Content-Length") ? req.get_header_value("Content-Length")
                                              : std::to_string(req.body.size())) +
            " bytes in)");
      });
    }
  }
};

TranscribeServer::TranscribeServer(ServerOptions options) : impl_(std::make_unique<Impl>()) {
  impl_->options = std::move(options);
  impl_->pool = std::make_unique<Pool>(make_pool_options(impl_->options));
  std::size_t threads = impl_->options.http_threads;
  impl_->http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  impl_->http.set_payload_max_length(impl_->options.max_body_bytes);
  impl_->http.set_read_timeout(std::chrono::seconds(60));
  impl_->http.set_write_timeout(std::chrono::seconds(60));
  impl_->routes();
  const ServerOptions& o = impl_->options;
  int port = o.port == 0 ? impl_->http.bind_to_any_port(o.host)
                         : (impl_->http.bind_to_port(o.host, o.port) ? o.port : -1);
  if (port <= 0) {
    impl_->pool->shutdown();
    throw std::runtime_error("cannot listen on " + o.host + ":" + std::to_string(o.port));
  }
  impl_->port = port;
}

TranscribeServer::~TranscribeServer() {
  shutdown();
}

int TranscribeServer::port() const noexcept {
  return impl_->port;
}

void TranscribeServer::run() {
  {
    std::lock_guard lock(impl_->mutex);
    if (impl_->stop_requested || impl_->running || impl_->ran) {
      impl_->ran = true;
      impl_->cv.notify_all();
      return;
    }
    impl_->running = true;
  }
  impl_->http.listen_after_bind();  // returns once stopped and in-flight requests are answered
  std::lock_guard lock(impl_->mutex);
  impl_->running = false;
  impl_->ran = true;
  impl_->cv.notify_all();
}

void TranscribeServer::start() {
  impl_->background = std::thread([this] { run(); });
}

void TranscribeServer::stop() {
  std::unique_lock lock(impl_->mutex);
  impl_->stop_requested = true;
  // httplib's stop() does nothing until listen has really begun, so repeat it until run() has
  // returned (or never started).
  while (impl_->running) {
    impl_->http.stop();
    impl_->cv.wait_for(lock, std::chrono::milliseconds(50), [&] { return !impl_->running; });
  }
}

void TranscribeServer::shutdown() {
  stop();
  if (impl_->background.joinable()) impl_->background.join();
  {
    std::lock_guard lock(impl_->mutex);
    if (impl_->shut_down) return;
    impl_->shut_down = true;
  }
  impl_->pool->shutdown(impl_->options.drain);
}

PoolStats TranscribeServer::stats() const {
  return impl_->pool->stats();
}

}  // namespace procpool::azure
