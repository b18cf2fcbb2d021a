#include "procpool/stats_format.hpp"

#include <fmt/format.h>

#include <iterator>

namespace procpool {

namespace {

// ---- JSON ----------------------------------------------------------------------------------

void json_string(std::string& out, std::string_view text) {
  out += '"';
  for (unsigned char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          fmt::format_to(std::back_inserter(out), "\\u{:04x}", c);
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
}

class JsonObject {
 public:
  explicit JsonObject(std::string& out) : out_(out) { out_ += '{'; }
  ~JsonObject() { out_ += '}'; }
  JsonObject(const JsonObject&) = delete;
  JsonObject& operator=(const JsonObject&) = delete;

  std::string& key(std::string_view name) {
    if (!first_) out_ += ',';
    first_ = false;
    json_string(out_, name);
    out_ += ':';
    return out_;
  }
  template <class T>
  void number(std::string_view name, T value) {
    fmt::format_to(std::back_inserter(key(name)), "{}", value);
  }
  void text(std::string_view name, std::string_view value) { json_string(key(name), value); }
  template <class T>
  void optional_number(std::string_view name, const std::optional<T>& value) {
    if (value) {
      number(name, *value);
    } else {
      key(name) += "null";
    }
  }
  void optional_text(std::string_view name, std::optional<std::string_view> value) {
    if (value) {
      text(name, *value);
    } else {
      key(name) += "null";
    }
  }

 private:
  std::string& out_;
  bool first_ = true;
};

std::optional<std::string_view> reason_name(const std::optional<RecycleReason>& reason) {
  if (!reason) return std::nullopt;
  return to_string(*reason);
}

// ---- Prometheus ----------------------------------------------------------------------------

std::string label_value(std::string_view text) {
  std::string out;
  for (char c : text) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

class Exposition {
 public:
  explicit Exposition(std::string& out) : out_(out) {}

  void family(std::string_view name, std::string_view type, std::string_view help) {
    fmt::format_to(std::back_inserter(out_), "# HELP procpool_{} {}\n# TYPE procpool_{} {}\n", name,
                   help, name, type);
  }
  template <class T>
  void sample(std::string_view name, std::string_view labels, T value) {
    if (labels.empty()) {
      fmt::format_to(std::back_inserter(out_), "procpool_{} {}\n", name, value);
    } else {
      fmt::format_to(std::back_inserter(out_), "procpool_{}{{{}}} {}\n", name, labels, value);
    }
  }
  template <class T>
  void single(std::string_view name, std::string_view type, std::string_view help, T value) {
    family(name, type, help);
    sample(name, "", value);
  }

 private:
  std::string& out_;
};

}  // namespace

std::string to_json(const PoolStats& stats) {
  std::string out;
  {
    JsonObject pool(out);
    pool.text("health", to_string(stats.health));
    pool.number("queued", stats.queued);
    pool.number("in_flight", stats.in_flight);
    pool.number("submitted", stats.submitted);
    pool.number("succeeded", stats.succeeded);
    pool.number("failed", stats.failed);
    pool.number("retries", stats.retries);
    pool.number("workers_started", stats.workers_started);
    pool.number("workers_exited", stats.workers_exited);
    pool.number("start_failures", stats.start_failures);
    pool.number("tracked_jobs", stats.tracked_jobs);
    pool.number("min_workers", stats.min_workers);
    pool.number("max_workers", stats.max_workers);
    {
      JsonObject kinds(pool.key("failed_by_kind"));
      for (std::size_t i = 0; i < error_kind_count; ++i) {
        kinds.number(to_string(static_cast<ErrorKind>(i)), stats.failed_by_kind[i]);
      }
    }
    {
      JsonObject reasons(pool.key("recycles_by_reason"));
      for (std::size_t i = 0; i < recycle_reason_count; ++i) {
        reasons.number(to_string(static_cast<RecycleReason>(i)), stats.recycles_by_reason[i]);
      }
    }
    {
      const MemoryStats& m = stats.memory;
      JsonObject memory(pool.key("memory"));
      memory.text("enforcement", to_string(m.enforcement));
      memory.text("worker_cgroups", m.worker_cgroups);
      memory.number("worker_cap_bytes", m.worker_cap_bytes);
      memory.number("worker_oom_score_adj", m.worker_oom_score_adj);
      memory.number("budget_bytes", m.budget_bytes);
      memory.number("budget_in_use_bytes", m.budget_in_use_bytes);
      memory.number("jobs_held_for_memory", m.jobs_held_for_memory);
      memory.key("holding_job_for_memory") += m.holding_job_for_memory ? "true" : "false";
      memory.number("jobs_over_budget", m.jobs_over_budget);
    }
    std::string& workers = pool.key("workers");
    workers += '[';
    for (std::size_t i = 0; i < stats.workers.size(); ++i) {
      if (i) workers += ',';
      const WorkerStats& w = stats.workers[i];
      JsonObject o(workers);
      o.number("id", w.id);
      o.number("pid", w.pid);
      o.text("state", to_string(w.state));
      o.number("jobs_done", w.jobs_done);
      o.optional_text("current_job", w.current_job ? std::optional<std::string_view>(*w.current_job)
                                                   : std::nullopt);
      o.number("current_job_running_for_ms", w.current_job_running_for.count());
      o.number("idle_for_ms", w.idle_for.count());
      o.number("age_ms", w.age.count());
      o.number("rss_bytes", w.rss_bytes);
      o.number("peak_rss_bytes", w.peak_rss_bytes);
      o.number("memory_bytes", w.memory_bytes);
      o.optional_number("baseline_bytes", w.baseline_bytes);
      o.number("growth_bytes_per_job", w.growth_bytes_per_job);
      o.number("growth_bytes_per_minute", w.growth_bytes_per_minute);
      o.optional_text("predecessor_reason", reason_name(w.predecessor_reason));
      o.optional_text("leaving_reason", reason_name(w.leaving_reason));
    }
    workers += ']';
    std::string& jobs = pool.key("jobs");
    jobs += '[';
    for (std::size_t i = 0; i < stats.jobs.size(); ++i) {
      if (i) jobs += ',';
      const JobStats& j = stats.jobs[i];
      JsonObject o(jobs);
      o.text("name", j.name);
      o.number("completed", j.completed);
      o.number("failed", j.failed);
      o.number("latency_p50_ms", j.latency_p50_ms);
      o.number("latency_p99_ms", j.latency_p99_ms);
      o.number("memory_delta_mean_bytes", j.memory_delta_mean_bytes);
      o.number("memory_delta_max_bytes", j.memory_delta_max_bytes);
    }
    jobs += ']';
  }
  return out;
}

std::string to_prometheus(const PoolStats& stats) {
  std::string out;
  Exposition e(out);
  e.family("health", "gauge", "1 for the pool's current health state, 0 for the others.");
  for (PoolHealth h : {PoolHealth::healthy, PoolHealth::degraded, PoolHealth::stopped}) {
    e.sample("health", fmt::format("state=\"{}\"", to_string(h)), h == stats.health ? 1 : 0);
  }
  e.single("jobs_queued", "gauge", "Jobs waiting for a worker.", stats.queued);
  e.single("jobs_in_flight", "gauge", "Jobs sent to a worker and not finished.", stats.in_flight);
  e.single("jobs_submitted_total", "counter", "Jobs submitted, accepted or rejected.",
           stats.submitted);
  e.single("jobs_succeeded_total", "counter", "Jobs that returned a result.", stats.succeeded);
  e.family("jobs_failed_total", "counter", "Jobs that failed, by error kind.");
  for (std::size_t i = 0; i < error_kind_count; ++i) {
    e.sample("jobs_failed_total", fmt::format("kind=\"{}\"", to_string(static_cast<ErrorKind>(i))),
             stats.failed_by_kind[i]);
  }
  e.single("job_retries_total", "counter",
           "Attempts retried after a crash, timeout or memory kill.", stats.retries);
  e.single("workers", "gauge", "Worker processes alive (any state).", stats.workers.size());
  e.single("workers_min", "gauge", "Configured minimum workers.", stats.min_workers);
  e.single("workers_max", "gauge", "Configured maximum workers.", stats.max_workers);
  e.single("workers_started_total", "counter", "Worker processes started.", stats.workers_started);
  e.single("worker_start_failures_total", "counter", "Workers that failed before reporting ready.",
           stats.start_failures);
  e.family("recycles_total", "counter", "Workers that left, by reason.");
  for (std::size_t i = 0; i < recycle_reason_count; ++i) {
    e.sample("recycles_total",
             fmt::format("reason=\"{}\"", to_string(static_cast<RecycleReason>(i))),
             stats.recycles_by_reason[i]);
  }
  const MemoryStats& memory = stats.memory;
  e.family("memory_enforcement", "gauge",
           "1 for what keeps workers' memory in bounds (sampled limits, kernel caps), 0 for the "
           "others.");
  for (MemoryEnforcement m :
       {MemoryEnforcement::sampled, MemoryEnforcement::cgroup_v1, MemoryEnforcement::cgroup_v2}) {
    e.sample("memory_enforcement", fmt::format("enforcement=\"{}\"", to_string(m)),
             m == memory.enforcement ? 1 : 0);
  }
  e.single("worker_memory_cap_bytes", "gauge", "Each worker's kernel memory cap (0: none).",
           memory.worker_cap_bytes);
  e.single("memory_budget_bytes", "gauge", "The pool memory budget (0: none).",
           memory.budget_bytes);
  e.single("memory_budget_in_use_bytes", "gauge",
           "What the workers hold against the memory budget.", memory.budget_in_use_bytes);
  e.single("jobs_held_for_memory_total", "counter",
           "Jobs that waited for the memory budget before they ran.", memory.jobs_held_for_memory);
  e.single("job_holding_for_memory", "gauge",
           "1 while the job at the head of the queue waits for the memory budget.",
           memory.holding_job_for_memory ? 1 : 0);
  e.single("jobs_over_memory_budget_total", "counter",
           "Jobs failed at once: their expected peak alone exceeds the memory budget.",
           memory.jobs_over_budget);
  auto per_worker = [&](std::string_view name, std::string_view type, std::string_view help,
                        auto value_of) {
    e.family(name, type, help);
    for (const WorkerStats& w : stats.workers) {
      e.sample(name, fmt::format("worker=\"{}\",pid=\"{}\"", w.id, w.pid), value_of(w));
    }
  };
  per_worker("worker_rss_bytes", "gauge", "Resident set size at the last reading.",
             [](const WorkerStats& w) { return w.rss_bytes; });
  per_worker("worker_peak_rss_bytes", "gauge", "Largest resident set size seen.",
             [](const WorkerStats& w) { return w.peak_rss_bytes; });
  per_worker("worker_memory_bytes", "gauge", "Memory in the metric the recycle limits use.",
             [](const WorkerStats& w) { return w.memory_bytes; });
  per_worker("worker_jobs_done", "gauge", "Jobs this worker process has finished.",
             [](const WorkerStats& w) { return w.jobs_done; });
  per_worker("worker_age_seconds", "gauge", "Time since the worker was spawned.",
             [](const WorkerStats& w) { return static_cast<double>(w.age.count()) / 1000.0; });
  per_worker("worker_idle_seconds", "gauge",
             "Time since the worker's last job ended (0 while busy).",
             [](const WorkerStats& w) { return static_cast<double>(w.idle_for.count()) / 1000.0; });
  per_worker("worker_growth_bytes_per_job", "gauge",
             "Memory growth since the worker's baseline, per job.",
             [](const WorkerStats& w) { return w.growth_bytes_per_job; });
  auto per_job = [&](std::string_view name, std::string_view type, std::string_view help,
                     auto value_of) {
    e.family(name, type, help);
    for (const JobStats& j : stats.jobs)
      e.sample(name, fmt::format("job=\"{}\"", label_value(j.name)), value_of(j));
  };
  per_job("job_completed_total", "counter", "Jobs of this name completed by a worker.",
          [](const JobStats& j) { return j.completed; });
  per_job("job_failed_total", "counter", "Jobs of this name that failed after reaching a worker.",
          [](const JobStats& j) { return j.failed; });
  per_job("job_latency_p50_seconds", "gauge", "Median dispatch-to-outcome latency, recent jobs.",
          [](const JobStats& j) { return j.latency_p50_ms / 1000.0; });
  per_job("job_latency_p99_seconds", "gauge",
          "99th percentile dispatch-to-outcome latency, recent jobs.",
          [](const JobStats& j) { return j.latency_p99_ms / 1000.0; });
  per_job("job_memory_delta_mean_bytes", "gauge", "Mean change in worker memory across one job.",
          [](const JobStats& j) { return j.memory_delta_mean_bytes; });
  per_job("job_memory_delta_max_bytes", "gauge", "Largest change in worker memory across one job.",
          [](const JobStats& j) { return j.memory_delta_max_bytes; });
  return out;
}

}  // namespace procpool
