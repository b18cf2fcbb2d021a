// procpool-transcribe-server's flags: each with its help line and how it sets ServerOptions, read
// from the command line and from PROCPOOL_TRANSCRIBE_* variables.
#include <cctype>
#include <charconv>
#include <cstdio>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "azure_transcription/server.hpp"

namespace procpool::azure {

namespace {

struct Flag {
  const char* name;  // without "--"
  const char* help;
  std::function<void(ServerOptions&, const std::string&)> set;
};

std::uint64_t parse_u64(const std::string& what, const std::string& text, std::uint64_t max) {
  std::uint64_t v = 0;
  const char* end = text.data() + text.size();
  auto [p, ec] = std::from_chars(text.data(), end, v);
  if (text.empty() || ec != std::errc{} || p != end || v > max) {
    throw std::invalid_argument(what + ": expected a whole number up to " + std::to_string(max) +
                                ", got \"" + text + "\"");
  }
  return v;
}

double parse_fraction(const std::string& what, const std::string& text) {
  double v = 0;
  const char* end = text.data() + text.size();
  auto [p, ec] = std::from_chars(text.data(), end, v);
  if (text.empty() || ec != std::errc{} || p != end || !(v >= 0 && v <= 1)) {
    throw std::invalid_argument(what + ": expected a number from 0 to 1, got \"" + text + "\"");
  }
  return v;
}

const std::vector<Flag>& flags() {
  static const std::vector<Flag> all = [] {
    std::vector<Flag> f;
    auto u64 = [](const std::string& what, const std::string& v, std::uint64_t max) {
      return parse_u64(what, v, max);
    };
    f.push_back({"host", "address to listen on (default 127.0.0.1)",
                 [](ServerOptions& o, const std::string& v) { o.host = v; }});
    f.push_back({"port", "port to listen on; 0 lets the OS choose (default 8080)",
                 [u64](ServerOptions& o, const std::string& v) {
                   o.port = static_cast<int>(u64("port", v, 65535));
                 }});
    f.push_back(
        {"workers", "worker processes (default 2)", [u64](ServerOptions& o, const std::string& v) {
           o.workers = static_cast<std::size_t>(u64("workers", v, 1024));
           if (o.workers == 0) throw std::invalid_argument("workers: must be at least 1");
         }});
    f.push_back({"http-threads", "connections served at once (default 16)",
                 [u64](ServerOptions& o, const std::string& v) {
                   o.http_threads = static_cast<std::size_t>(u64("http-threads", v, 4096));
                   if (o.http_threads == 0) {
                     throw std::invalid_argument("http-threads: must be at least 1");
                   }
                 }});
    f.push_back({"queue-capacity", "jobs that may wait for a worker before 503 (default 64)",
                 [u64](ServerOptions& o, const std::string& v) {
                   o.queue_capacity = static_cast<std::size_t>(u64("queue-capacity", v, 1 << 20));
                   if (o.queue_capacity == 0) {
                     throw std::invalid_argument("queue-capacity: must be at least 1");
                   }
                 }});
    f.push_back({"max-body-mb", "largest upload in MiB (default 256)",
                 [u64](ServerOptions& o, const std::string& v) {
                   o.max_body_bytes = static_cast<std::size_t>(u64("max-body-mb", v, 4000)) << 20;
                   if (o.max_body_bytes == 0) {
                     throw std::invalid_argument("max-body-mb: must be at least 1");
                   }
                 }});
    f.push_back({"job-timeout-s", "per-job timeout in seconds, 0 = none (default 330)",
                 [u64](ServerOptions& o, const std::string& v) {
                   o.job_timeout = std::chrono::seconds(u64("job-timeout-s", v, 86400));
                 }});
    f.push_back({"job-timeout-ms", "per-job timeout in milliseconds (overrides -s)",
                 [u64](ServerOptions& o, const std::string& v) {
                   o.job_timeout = std::chrono::milliseconds(u64("job-timeout-ms", v, 86400000));
                 }});
    f.push_back({"attempts", "runs of a job whose worker crashed or was killed (default 2)",
                 [u64](ServerOptions& o, const std::string& v) {
                   o.attempts = static_cast<unsigned>(u64("attempts", v, 100));
                   if (o.attempts == 0) throw std::invalid_argument("attempts: must be at least 1");
                 }});
    f.push_back({"max-jobs", "retire a worker after this many jobs, 0 = off (default 0)",
                 [u64](ServerOptions& o, const std::string& v) {
                   o.max_jobs = u64("max-jobs", v, UINT32_MAX);
                 }});
    f.push_back({"memory-soft-limit-mb",
                 "retire a worker left above this after a job (default 1024)",
                 [u64](ServerOptions& o, const std::string& v) {
                   o.memory_soft_limit = u64("memory-soft-limit-mb", v, 1 << 24) << 20;
                 }});
    f.push_back({"memory-hard-limit-mb", "kill a worker above this at once, 0 = off (default 4096)",
                 [u64](ServerOptions& o, const std::string& v) {
                   o.memory_hard_limit = u64("memory-hard-limit-mb", v, 1 << 24) << 20;
                 }});
    f.push_back({"memory-growth-limit-mb",
                 "retire a worker this far above its baseline (default 0)",
                 [u64](ServerOptions& o, const std::string& v) {
                   o.memory_growth_limit = u64("memory-growth-limit-mb", v, 1 << 24) << 20;
                 }});
    f.push_back({"idle-recycle-s", "recycle a worker idle this long, 0 = off (default 300)",
                 [u64](ServerOptions& o, const std::string& v) {
                   o.idle_timeout = std::chrono::seconds(u64("idle-recycle-s", v, 86400 * 365));
                 }});
    f.push_back({"max-lifetime-s", "retire a worker this long after start, 0 = off (default 0)",
                 [u64](ServerOptions& o, const std::string& v) {
                   o.max_lifetime = std::chrono::seconds(u64("max-lifetime-s", v, 86400 * 365));
                 }});
    f.push_back({"memory-metric", "rss, pss or uss: what the limits compare (default rss)",
                 [](ServerOptions& o, const std::string& v) {
                   if (v == "rss") {
                     o.memory_metric = MemoryMetric::rss;
                   } else if (v == "pss") {
                     o.memory_metric = MemoryMetric::pss;
                   } else if (v == "uss") {
                     o.memory_metric = MemoryMetric::uss;
                   } else {
                     throw std::invalid_argument("memory-metric: expected rss, pss or uss, got \"" +
                                                 v + "\"");
                   }
                 }});
    f.push_back({"worker-memory-cgroups",
                 "1/0: each worker in a memory cgroup the kernel caps (default 1)",
                 [](ServerOptions& o, const std::string& v) {
                   if (v != "0" && v != "1") {
                     throw std::invalid_argument("worker-memory-cgroups: expected 1 or 0, got \"" +
                                                 v + "\"");
                   }
                   o.worker_cgroups = v == "1";
                 }});
    f.push_back({"worker-memory-cap-mb",
                 "each worker's kernel memory cap, 0 = the hard limit (default 0)",
                 [u64](ServerOptions& o, const std::string& v) {
                   o.worker_memory_cap = u64("worker-memory-cap-mb", v, 1 << 24) << 20;
                 }});
    f.push_back({"worker-cgroup-parent",
                 "memory cgroup directory to make workers' cgroups in (default: the server's)",
                 [](ServerOptions& o, const std::string& v) { o.worker_cgroup_parent = v; }});
    f.push_back({"memory-budget-mb",
                 "workers' memory together that jobs wait for, 0 = the fraction (default 0)",
                 [u64](ServerOptions& o, const std::string& v) {
                   o.memory_budget = u64("memory-budget-mb", v, 1 << 24) << 20;
                 }});
    f.push_back({"memory-budget-fraction",
                 "budget as a fraction of the container's memory limit, 0 = none (default 0.7)",
                 [](ServerOptions& o, const std::string& v) {
                   o.memory_budget_fraction = parse_fraction("memory-budget-fraction", v);
                 }});
    f.push_back({"drain-s", "on SIGTERM, time jobs get to finish (default 30)",
                 [u64](ServerOptions& o, const std::string& v) {
                   o.drain = std::chrono::seconds(u64("drain-s", v, 86400));
                 }});
    f.push_back({"simulate-native-leak-mb", "each job also leaks N MiB in its worker (default 0)",
                 [u64](ServerOptions& o, const std::string& v) {
                   o.simulate_leak_mb =
                       static_cast<std::size_t>(u64("simulate-native-leak-mb", v, 1 << 20));
                 }});
    f.push_back({"worker-executable", "worker binary (default: this binary, self-exec)",
                 [](ServerOptions& o, const std::string& v) { o.worker_executable = v; }});
    f.push_back({"quiet", "no per-request log lines (value 1/0, or no value)",
                 [](ServerOptions& o, const std::string& v) { o.quiet = v != "0"; }});
    return f;
  }();
  return all;
}

std::string env_name(std::string_view flag) {
  std::string name = "PROCPOOL_TRANSCRIBE_";
  for (char c : flag)
    name += c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return name;
}

const Flag* find_flag(std::string_view name) {
  for (const Flag& f : flags()) {
    if (name == f.name) return &f;
  }
  return nullptr;
}

}  // namespace

std::string server_usage() {
  std::string out =
      "usage: procpool-transcribe-server [--flag value | --flag=value]...\n"
      "Azure: AZURE_SPEECH_KEY and AZURE_SPEECH_REGION (or AZURE_SPEECH_ENDPOINT) in the "
      "environment.\nEvery flag can also be set as PROCPOOL_TRANSCRIBE_<FLAG> (flags win).\n";
  for (const Flag& f : flags()) {
    char line[256];
    std::snprintf(line, sizeof line, "  --%-24s %s\n", f.name, f.help);
    out += line;
  }
  return out;
}

ServerOptions parse_server_options(const std::vector<std::string>& args,
                                   const std::map<std::string, std::string>& env) {
  ServerOptions o;
  for (const Flag& f : flags()) {
    auto it = env.find(env_name(f.name));
    if (it != env.end() && !it->second.empty()) {
      try {
        f.set(o, it->second);
      } catch (const std::invalid_argument& e) {
        throw std::invalid_argument(env_name(f.name) + ": " + e.what());
      }
    }
  }
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--help" || a == "-h") throw HelpRequested{};
    if (a.rfind("--", 0) != 0) throw std::invalid_argument("unexpected argument \"" + a + "\"");
    std::string name = a.substr(2);
    std::optional<std::string> value;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name.resize(eq);
    }
    const Flag* f = find_flag(name);
    if (f == nullptr) throw std::invalid_argument("unknown flag --" + name + " (see --help)");
    if (!value) {
      if (name == "quiet") {
        value = "1";
      } else if (i + 1 < args.size()) {
        value = args[++i];
      } else {
        throw std::invalid_argument("--" + name + " needs a value");
      }
    }
    f->set(o, *value);
  }
  return o;
}

}  // namespace procpool::azure
