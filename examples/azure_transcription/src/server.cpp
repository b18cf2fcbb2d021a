// procpool-transcribe-server's library: option parsing, request parsing, error mapping and the
// HTTP routes. Transcriptions run as azure.transcribe jobs in a procpool::Pool.
#include "azure_transcription/server.hpp"

#include <httplib.h>
#include <unistd.h>
#include <procpool/pool.hpp>
#include <procpool/stats_format.hpp>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <charconv>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <thread>

#include "azure_transcription/job.hpp"
#include "azure_transcription/types.hpp"
#include "json_numbers.hpp"

namespace procpool::azure {

namespace {

using json = nlohmann::json;

// ---------------------------------------------------------------------------------------------
// Options

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
    f.push_back({"rss-soft-limit-mb", "retire a worker left above this after a job (default 1024)",
                 [u64](ServerOptions& o, const std::string& v) {
                   o.rss_soft_limit = u64("rss-soft-limit-mb", v, 1 << 24) << 20;
                 }});
    f.push_back({"rss-hard-limit-mb", "kill a worker above this at once, 0 = off (default 4096)",
                 [u64](ServerOptions& o, const std::string& v) {
                   o.rss_hard_limit = u64("rss-hard-limit-mb", v, 1 << 24) << 20;
                 }});
    f.push_back({"rss-growth-limit-mb", "retire a worker this far above its baseline (default 0)",
                 [u64](ServerOptions& o, const std::string& v) {
                   o.rss_growth_limit = u64("rss-growth-limit-mb", v, 1 << 24) << 20;
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

// ---------------------------------------------------------------------------------------------
// Errors as JSON

struct HttpError {
  int status = 500;
  std::string code;
  std::string message;
  std::string source = "server";  // server | azure | pool
  json extra = json::object();
};

std::string error_body(const HttpError& e) {
  json err = {{"status", e.status}, {"code", e.code}, {"message", e.message}, {"source", e.source}};
  for (auto it = e.extra.begin(); it != e.extra.end(); ++it)
    err[it.key()] = it.value();
  return json{{"error", err}}.dump();
}

HttpError bad_request(std::string code, std::string message, int status = 400) {
  return HttpError{status, std::move(code), std::move(message), "server", json::object()};
}

// An Azure adapter failure (recovered from the job's message) as an HTTP error.
HttpError from_azure(const AzureError::Details& d) {
  HttpError e;
  e.source = "azure";
  e.message = d.message;
  e.code = d.code;
  switch (d.kind) {
    case ErrorKind::invalid_audio:
    case ErrorKind::invalid_request:
      e.status = 400;
      e.source = "server";  // refused before anything was sent
      break;
    case ErrorKind::configuration:
      e.status = 500;
      e.source = "server";
      break;
    case ErrorKind::throttled:
      e.status = 503;
      break;
    case ErrorKind::service_error:
      e.status = d.http_status == 503 ? 503 : 502;
      break;
    case ErrorKind::timeout:
      e.status = 504;
      break;
    case ErrorKind::authentication:
    case ErrorKind::bad_request:
    case ErrorKind::connection:
    case ErrorKind::bad_response:
      e.status = 502;
      break;
  }
  if (e.code.empty()) e.code = std::string(to_string(d.kind));
  e.extra["kind"] = std::string(to_string(d.kind));
  if (d.http_status != 0) e.extra["azure_status"] = d.http_status;
  if (!d.request_id.empty()) e.extra["request_id"] = d.request_id;
  e.extra["attempts"] = d.attempts;
  return e;
}

// A procpool job failure as an HTTP error.
HttpError from_job_error(const JobError& error) {
  if (error.kind == procpool::ErrorKind::handler_error) {
    if (auto d = AzureError::from_message(error.message)) return from_azure(*d);
  }
  HttpError e;
  e.source = "pool";
  e.code = std::string(procpool::to_string(error.kind));
  e.message = error.message;
  switch (error.kind) {
    case procpool::ErrorKind::timeout:
      e.status = 504;
      e.message = "the transcription did not finish within the job timeout";
      break;
    case procpool::ErrorKind::queue_full:
    case procpool::ErrorKind::shutting_down:
    case procpool::ErrorKind::pool_degraded:
    case procpool::ErrorKind::cancelled:
      e.status = 503;
      break;
    case procpool::ErrorKind::payload_too_large:
      e.status = 413;
      break;
    default:
      e.status = 500;
      break;
  }
  e.extra["attempts"] = error.attempts;
  return e;
}

// ---------------------------------------------------------------------------------------------
// Request parsing

std::string lower(std::string s) {
  for (char& c : s)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front())))
    s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back())))
    s.remove_suffix(1);
  return std::string(s);
}

std::vector<std::string> split_commas(const std::string& text) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= text.size()) {
    std::size_t comma = text.find(',', start);
    if (comma == std::string::npos) comma = text.size();
    std::string item = trim(std::string_view(text).substr(start, comma - start));
    if (!item.empty()) out.push_back(item);
    start = comma + 1;
  }
  return out;
}

bool parse_bool(const std::string& name, const std::string& v) {
  std::string l = lower(v);
  if (l == "true" || l == "1" || l == "yes" || l.empty()) return true;
  if (l == "false" || l == "0" || l == "no") return false;
  throw bad_request("InvalidQueryParameter",
                    "parameter \"" + name + "\": expected true or false, got \"" + v + "\"");
}

int parse_int(const std::string& name, const std::string& v, int lo, int hi) {
  int x = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), x);
  if (v.empty() || ec != std::errc{} || p != v.data() + v.size() || x < lo || x > hi) {
    throw bad_request("InvalidQueryParameter", "parameter \"" + name + "\": expected an integer " +
                                                   std::to_string(lo) + ".." + std::to_string(hi) +
                                                   ", got \"" + v + "\"");
  }
  return x;
}

// Query parameters shared by both request forms.
void apply_query(const httplib::Request& req, TranscribeRequest& r) {
  std::vector<std::string> locales;
  bool locale_given = false;
  for (const auto& [name, value] : req.params) {
    if (name == "locale" || name == "language" || name == "locales") {
      locale_given = true;
      if (lower(value) == "auto") continue;  // language detection (fast transcription)
      for (auto& l : split_commas(value))
        locales.push_back(l);
    } else if (name == "format") {
      auto f = parse_output_format(lower(value));
      if (!f) {
        throw bad_request(
            "InvalidQueryParameter",
            "parameter \"format\": expected simple or detailed, got \"" + value + "\"");
      }
      r.format = *f;
    } else if (name == "profanity") {
      auto p = parse_profanity(lower(value));
      if (!p) {
        throw bad_request("InvalidQueryParameter",
                          "parameter \"profanity\": expected masked, removed, raw or tags, got \"" +
                              value + "\"");
      }
      r.profanity = *p;
    } else if (name == "api") {
      std::string l = lower(value);
      if (l == "automatic") l = "auto";
      if (l == "short_audio") l = "short";
      auto a = parse_api(l);
      if (!a) {
        throw bad_request("InvalidQueryParameter",
                          "parameter \"api\": expected auto, short or fast, got \"" + value + "\"");
      }
      r.api = *a;
    } else if (name == "diarization") {
      r.diarization = parse_bool(name, value);
    } else if (name == "max_speakers") {
      r.max_speakers = parse_int(name, value, 1, 36);
    } else if (name == "channels") {
      r.channels.clear();
      for (auto& c : split_commas(value))
        r.channels.push_back(parse_int(name, c, 0, 64));
    } else if (name == "timeout_ms") {
      r.total_timeout = std::chrono::milliseconds(parse_int(name, value, 1, 24 * 3600 * 1000));
    } else {
      throw bad_request("InvalidQueryParameter",
                        "unknown query parameter \"" + name +
                            "\"; known: locale, format, profanity, api, diarization, "
                            "max_speakers, channels, timeout_ms");
    }
  }
  if (locale_given) r.locales = std::move(locales);
}

// Fast transcription's `definition` JSON (the subset the adapter supports).
void apply_definition(const std::string& text, TranscribeRequest& r) {
  json d;
  try {
    d = json::parse(text);
  } catch (const json::exception& e) {
    throw bad_request("InvalidDefinition",
                      std::string("the definition part is not valid JSON: ") + e.what());
  }
  if (!d.is_object())
    throw bad_request("InvalidDefinition", "the definition must be a JSON object");
  try {
    if (d.contains("locales")) {
      r.locales = d.at("locales").get<std::vector<std::string>>();
    }
    if (d.contains("profanityFilterMode")) {
      std::string mode = lower(d.at("profanityFilterMode").get<std::string>());
      if (mode == "none") mode = "raw";
      auto p = parse_profanity(mode);
      if (!p) {
        throw bad_request("InvalidDefinition",
                          "definition.profanityFilterMode: expected None, Masked, Removed or Tags");
      }
      r.profanity = *p;
    }
    const json* diar = nullptr;
    if (d.contains("diarization")) diar = &d.at("diarization");
    if (d.contains("diarizationSettings")) diar = &d.at("diarizationSettings");
    if (diar != nullptr) {
      if (!diar->is_object()) {
        throw bad_request("InvalidDefinition", "definition.diarization must be an object");
      }
      r.diarization = diar->value("enabled", true);
      if (diar->contains("maxSpeakers")) {
        auto speakers = detail::checked_integer<int>(diar->at("maxSpeakers"));
        if (!speakers) {
          throw bad_request("InvalidDefinition",
                            "definition.diarization.maxSpeakers must be an integer");
        }
        r.max_speakers = *speakers;
      }
    }
    if (d.contains("channels")) {
      const json& channels = d.at("channels");
      if (!channels.is_array()) {
        throw bad_request("InvalidDefinition", "definition.channels must be an array of integers");
      }
      for (const json& channel : channels) {
        auto number = detail::checked_integer<int>(channel);
        if (!number) {
          throw bad_request("InvalidDefinition",
                            "definition.channels must be an array of integers");
        }
        r.channels.push_back(*number);
      }
    }
  } catch (const json::exception& e) {
    throw bad_request("InvalidDefinition", std::string("the definition has a field of the wrong "
                                                       "type: ") +
                                               e.what());
  }
}

std::string guess_content_type(const std::string& declared, const std::string& filename) {
  std::string type = lower(trim(declared));
  if (!type.empty() && type != "application/octet-stream") return trim(declared);
  std::string name = lower(filename);
  auto ends = [&](std::string_view ext) {
    return name.size() >= ext.size() &&
           name.compare(name.size() - ext.size(), ext.size(), ext) == 0;
  };
  if (ends(".ogg") || ends(".opus")) return "audio/ogg; codecs=opus";
  if (ends(".mp3")) return "audio/mpeg";
  if (ends(".flac")) return "audio/flac";
  if (ends(".webm")) return "audio/webm";
  if (ends(".aac")) return "audio/aac";
  if (ends(".amr")) return "audio/amr";
  if (ends(".wma")) return "audio/x-ms-wma";
  return "audio/wav";
}

TranscribeRequest parse_request(const httplib::Request& req) {
  TranscribeRequest r;
  if (req.is_multipart_form_data()) {
    if (!req.has_file("audio")) {
      throw bad_request("MissingAudio", "the multipart form has no \"audio\" part");
    }
    httplib::MultipartFormData audio = req.get_file_value("audio");
    if (audio.content.empty()) throw bad_request("EmptyAudio", "the \"audio\" part is empty");
    apply_query(req, r);
    if (req.has_file("definition")) apply_definition(req.get_file_value("definition").content, r);
    for (const auto& [name, part] : req.files) {
      if (name != "audio" && name != "definition") {
        throw bad_request("UnknownFormPart",
                          "unknown form part \"" + name + "\"; expected audio and definition");
      }
    }
    r.content_type = guess_content_type(audio.content_type, audio.filename);
    const auto* p = reinterpret_cast<const std::byte*>(audio.content.data());
    r.audio.assign(p, p + audio.content.size());
  } else {
    if (req.body.empty()) {
      throw bad_request("EmptyAudio",
                        "the request has no audio: send it as the body (Content-Type audio/wav, "
                        "...) or as the \"audio\" part of a multipart form");
    }
    std::string type = req.get_header_value("Content-Type");
    std::string media = lower(trim(type.substr(0, type.find(';'))));
    if (media.rfind("multipart/", 0) == 0 || media == "application/json" ||
        media == "application/x-www-form-urlencoded" || media.rfind("text/", 0) == 0) {
      throw bad_request("UnsupportedMediaType",
                        "Content-Type \"" + type +
                            "\" is not audio; send audio/wav, audio/ogg; codecs=opus, ... or "
                            "multipart/form-data",
                        415);
    }
    apply_query(req, r);
    r.content_type = guess_content_type(type, "");
    const auto* p = reinterpret_cast<const std::byte*>(req.body.data());
    r.audio.assign(p, p + req.body.size());
  }
  return r;
}

void send_json(httplib::Response& res, int status, const std::string& body) {
  res.status = status;
  res.set_content(body, "application/json");
}

void send_error(httplib::Response& res, const HttpError& e) {
  if (e.status == 503) res.set_header("Retry-After", "1");
  send_json(res, e.status, error_body(e));
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Public functions

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

PoolOptions make_pool_options(const ServerOptions& o) {
  PoolOptions p;
  p.workers = o.workers;
  p.queue_capacity = o.queue_capacity;
  p.when_queue_full = QueueFullPolicy::reject;
  p.job_timeout = o.job_timeout;
  p.max_payload_bytes = o.max_body_bytes + (std::size_t{1} << 20);  // audio + options JSON
  p.recycle.max_jobs = o.max_jobs;
  p.recycle.max_jobs_jitter = o.max_jobs > 4 ? o.max_jobs / 4 : 0;
  p.recycle.rss_soft_limit = o.rss_soft_limit;
  p.recycle.rss_hard_limit = o.rss_hard_limit;
  p.recycle.rss_growth_limit = o.rss_growth_limit;
  p.recycle.idle_timeout = o.idle_timeout;
  p.recycle.max_lifetime = o.max_lifetime;
  p.recycle.max_lifetime_jitter = o.max_lifetime / 10;
  p.recycle.memory_metric = o.memory_metric;
  // Kernel caps where the machine allows them (else a logged fallback), and a budget that keeps
  // the workers inside the container's limit with room for the server itself.
  p.worker_cgroups.enabled = o.worker_cgroups && (o.worker_memory_cap > 0 || o.rss_hard_limit > 0);
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
      request = parse_request(req);
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
      send_error(res, from_job_error(result.error()));
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
