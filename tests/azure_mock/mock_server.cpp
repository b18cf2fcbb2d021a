#include "mock_server.hpp"

#include <httplib.h>

#include <algorithm>
#include <cctype>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>
#include <thread>

namespace procpool::azure_mock {

using nlohmann::json;

Fault Fault::http(int status, std::optional<int> retry_after_seconds) {
  Fault f;
  f.kind = Kind::status;
  f.status = status;
  f.retry_after_seconds = retry_after_seconds;
  return f;
}
Fault Fault::slow(std::chrono::milliseconds delay) {
  Fault f;
  f.kind = Kind::slow;
  f.delay = delay;
  return f;
}
Fault Fault::drop() {
  Fault f;
  f.kind = Kind::drop;
  return f;
}
Fault Fault::recognition_error() {
  Fault f;
  f.kind = Kind::recognition_error;
  return f;
}
Fault Fault::echo_key() {
  Fault f;
  f.kind = Kind::echo_key;
  f.status = 400;
  return f;
}

namespace {

// ---- audio
// ---------------------------------------------------------------------------------------

struct Audio {
  bool wav = false;
  bool wav_ok = false;
  std::string wav_problem;
  std::uint32_t rate = 0;
  std::uint16_t channels = 0;
  std::uint16_t bits = 0;
  std::uint16_t format = 0;
  std::span<const std::byte> samples;  // the data chunk, or the whole file if not WAV
  double seconds = 0;
};

std::uint32_t le32(const std::byte* p) {
  return static_cast<std::uint32_t>(p[0]) | static_cast<std::uint32_t>(p[1]) << 8 |
         static_cast<std::uint32_t>(p[2]) << 16 | static_cast<std::uint32_t>(p[3]) << 24;
}
std::uint16_t le16(const std::byte* p) {
  return static_cast<std::uint16_t>(static_cast<unsigned>(p[0]) | static_cast<unsigned>(p[1]) << 8);
}

// An independent, deliberately simple RIFF walk (the mock must not share the adapter's parser).
Audio read_audio(std::span<const std::byte> file) {
  Audio a;
  a.samples = file;
  a.seconds = static_cast<double>(file.size()) / 4000.0;  // non-WAV: pretend 32 kbit/s
  if (file.size() < 12 || std::memcmp(file.data(), "RIFF", 4) != 0) return a;
  a.wav = true;
  if (std::memcmp(file.data() + 8, "WAVE", 4) != 0) {
    a.wav_problem = "not a WAVE file";
    return a;
  }
  bool fmt = false;
  for (std::size_t pos = 12; pos + 8 <= file.size();) {
    std::uint32_t size = le32(file.data() + pos + 4);
    std::size_t body = pos + 8;
    std::size_t left = file.size() - body;
    if (std::memcmp(file.data() + pos, "fmt ", 4) == 0 && size >= 16 && size <= left) {
      a.format = le16(file.data() + body);
      a.channels = le16(file.data() + body + 2);
      a.rate = le32(file.data() + body + 4);
      a.bits = le16(file.data() + body + 14);
      fmt = true;
    } else if (std::memcmp(file.data() + pos, "data", 4) == 0) {
      if (!fmt) {
        a.wav_problem = "data before fmt";
        return a;
      }
      std::size_t n = size == 0xFFFFFFFFu ? left : size;
      if (n > left) {
        a.wav_problem = "truncated data chunk";
        return a;
      }
      a.samples = file.subspan(body, n);
      std::uint64_t byte_rate = std::uint64_t{a.rate} * a.channels * (a.bits / 8u);
      if (byte_rate == 0) {
        a.wav_problem = "zero byte rate";
        return a;
      }
      a.seconds = static_cast<double>(n) / static_cast<double>(byte_rate);
      a.wav_ok = true;
      return a;
    }
    if (size > left) break;
    pos = body + size + (size & 1);
  }
  a.wav_problem = fmt ? "no data chunk" : "no fmt chunk";
  return a;
}

std::uint64_t fnv1a(std::span<const std::byte> bytes) {
  std::uint64_t h = 1469598103934665603ull;
  for (std::byte b : bytes) {
    h ^= static_cast<std::uint64_t>(b);
    h *= 1099511628211ull;
  }
  return h;
}

std::uint64_t mix(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

constexpr const char* vocabulary[] = {
    "set",     "a",    "timer", "for",       "the",  "weather", "today",  "call",
    "mom",     "play", "some",  "music",     "turn", "on",      "lights", "in",
    "kitchen", "what", "time",  "is",        "it",   "remind",  "me",     "to",
    "buy",     "milk", "good",  "afternoon", "open", "door",    "read",   "news"};

constexpr double phrase_seconds = 5.0;
constexpr int words_per_phrase = 4;

bool all_zero(std::span<const std::byte> bytes) {
  return std::all_of(bytes.begin(), bytes.end(), [](std::byte b) { return b == std::byte{0}; });
}

std::string capitalise(std::string s) {
  if (!s.empty()) s[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(s[0])));
  return s;
}

struct Generated {
  std::vector<std::vector<std::string>> phrases;  // words of each phrase
  double seconds = 0;
};

Generated generate(std::span<const std::byte> file) {
  Audio a = read_audio(file);
  Generated g;
  g.seconds = a.seconds;
  if (a.samples.empty() || all_zero(a.samples)) return g;
  std::uint64_t h = fnv1a(a.samples);
  int count = std::clamp(static_cast<int>(a.seconds / phrase_seconds) + 1, 1, 100);
  for (int p = 0; p < count; ++p) {
    std::vector<std::string> words;
    for (int w = 0; w < words_per_phrase; ++w) {
      words.push_back(vocabulary[mix(h + static_cast<std::uint64_t>(p * 31 + w)) % 32]);
    }
    g.phrases.push_back(std::move(words));
  }
  return g;
}

std::string phrase_text(const std::vector<std::string>& words) {
  std::string t;
  for (const auto& w : words)
    t += (t.empty() ? capitalise(w) : " " + w);
  return t + ".";
}

std::string phrase_lexical(const std::vector<std::string>& words) {
  std::string t;
  for (const auto& w : words)
    t += (t.empty() ? "" : " ") + w;
  return t;
}

// ---- HTTP helpers -------------------------------------------------------------------------------

std::string lower(std::string s) {
  for (char& c : s)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Top-level service error shape.
std::string service_error(const std::string& code, const std::string& message) {
  return json{{"code", code},
              {"message", message},
              {"target", nullptr},
              {"details", json::array()},
              {"innerError", {{"code", code}}}}
      .dump();
}

// Gateway (API management) error shape.
std::string gateway_error(int status, const std::string& message) {
  return json{{"error", {{"code", std::to_string(status)}, {"message", message}}}}.dump();
}

const char* code_for(int status) {
  switch (status) {
    case 400:
      return "InvalidArgument";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "NotFound";
    case 408:
      return "InvalidRequest";
    case 413:
      return "InvalidRequest";
    case 415:
      return "UnsupportedMediaType";
    case 422:
      return "UnprocessableEntity";
    case 429:
      return "TooManyRequests";
    case 503:
      return "ServiceUnavailable";
    default:
      return status >= 500 ? "InternalServerError" : "InvalidRequest";
  }
}

void reply_json(httplib::Response& res, int status, const std::string& body) {
  res.status = status;
  res.set_content(body, "application/json; charset=utf-8");
}

}  // namespace

std::vector<std::string> expected_phrases(std::span<const std::byte> audio) {
  std::vector<std::string> out;
  for (const auto& words : generate(audio).phrases)
    out.push_back(phrase_text(words));
  return out;
}

std::string expected_text(std::span<const std::byte> audio) {
  std::string t;
  for (const auto& p : expected_phrases(audio))
    t += (t.empty() ? "" : " ") + p;
  return t;
}

// ---- the server --------------------------------------------------------------------------------

struct MockServer::Impl {
  MockOptions options;
  httplib::Server server;
  std::thread thread;
  int port = 0;

  mutable std::mutex mutex;
  std::condition_variable wake;
  bool stopping = false;
  std::deque<std::pair<Endpoint, Fault>> faults;
  std::map<std::string, std::chrono::steady_clock::time_point> tokens;  // token -> expiry
  std::uint64_t token_serial = 0;
  std::uint64_t request_serial = 0;
  Counters counts;
  std::vector<RequestRecord> records;

  std::optional<Fault> take_fault(Endpoint e) {
    std::lock_guard lock(mutex);
    for (auto it = faults.begin(); it != faults.end(); ++it) {
      if (it->first == e || it->first == Endpoint::any) {
        Fault f = it->second;
        faults.erase(it);
        ++counts.faults_applied;
        return f;
      }
    }
    return std::nullopt;
  }

  void record(RequestRecord r) {
    std::lock_guard lock(mutex);
    ++counts.total;
    switch (r.endpoint) {
      case Endpoint::short_audio:
        ++counts.short_audio;
        break;
      case Endpoint::fast:
        ++counts.fast;
        break;
      case Endpoint::token:
        ++counts.token;
        break;
      case Endpoint::any:
        ++counts.other;
        break;
    }
    if (r.chunked) ++counts.chunked;
    if (r.expect_continue) ++counts.expect_continue;
    ++counts.by_status[r.status];
    if (records.size() < 100'000) records.push_back(std::move(r));
  }

  std::string next_request_id() {
    std::lock_guard lock(mutex);
    return "mock-request-" + std::to_string(++request_serial);
  }

  RequestRecord start_record(Endpoint e, const httplib::Request& req) {
    RequestRecord r;
    r.endpoint = e;
    r.path = req.path;
    for (const auto& [k, v] : req.params)
      r.query[k] = v;
    r.chunked =
        lower(req.get_header_value("Transfer-Encoding")).find("chunked") != std::string::npos;
    r.expect_continue = lower(req.get_header_value("Expect")) == "100-continue";
    r.content_type = req.get_header_value("Content-Type");
    r.body_bytes = req.body.size();
    if (req.has_header("Ocp-Apim-Subscription-Key")) {
      r.auth = "key";
    } else if (req.has_header("Authorization")) {
      r.auth = "bearer";
    } else {
      r.auth = "none";
    }
    return r;
  }

  // Applies a fault that answers by itself; returns true if the response is complete. A slow
  // fault waits (waking early on stop) and lets normal processing continue.
  bool apply_fault(const std::optional<Fault>& fault, Endpoint e, httplib::Response& res,
                   RequestRecord& r) {
    if (!fault) return false;
    switch (fault->kind) {
      case Fault::Kind::slow: {
        std::unique_lock lock(mutex);
        wake.wait_for(lock, fault->delay, [&] { return stopping; });
        return false;
      }
      case Fault::Kind::drop:
        res.status = 200;
        res.set_content_provider(
            1000, "application/json",
            [](std::size_t, std::size_t, httplib::DataSink&) { return false; });
        r.status = -1;
        return true;
      case Fault::Kind::recognition_error:
        if (e != Endpoint::short_audio) return false;
        reply_json(res, 200,
                   json{{"RecognitionStatus", "Error"}, {"Offset", 0}, {"Duration", 0}}.dump());
        r.status = 200;
        return true;
      case Fault::Kind::echo_key:
        reply_json(res, 400,
                   service_error("InvalidArgument", "Rejected request with key " + options.key));
        r.status = 400;
        return true;
      case Fault::Kind::status:
        if (fault->retry_after_seconds) {
          res.set_header("Retry-After", std::to_string(*fault->retry_after_seconds));
        }
        if (fault->status == 401) {
          reply_json(res, 401,
                     gateway_error(401,
                                   "Access denied due to invalid subscription key or wrong "
                                   "API endpoint. Make sure to provide a valid key for an "
                                   "active subscription and use a correct regional API "
                                   "endpoint for your resource."));
        } else if (fault->status == 429) {
          reply_json(res, 429,
                     json{{"code", "TooManyRequests"},
                          {"message", "The rate limit has been reached. Please try again later."},
                          {"target", nullptr},
                          {"details", nullptr},
                          {"innerError", nullptr}}
                         .dump());
        } else {
          reply_json(res, fault->status,
                     service_error(code_for(fault->status),
                                   "scripted fault " + std::to_string(fault->status)));
        }
        r.status = fault->status;
        return true;
    }
    return false;
  }

  // Checks the credentials; on failure fills `res` and returns false.
  bool authorised(const httplib::Request& req, httplib::Response& res, RequestRecord& r) {
    if (req.has_header("Ocp-Apim-Subscription-Key")) {
      if (req.get_header_value("Ocp-Apim-Subscription-Key") == options.key) return true;
      reply_json(res, 401,
                 gateway_error(401,
                               "Access denied due to invalid subscription key or wrong API "
                               "endpoint. Make sure to provide a valid key for an active "
                               "subscription and use a correct regional API endpoint for "
                               "your resource."));
      r.status = 401;
      return false;
    }
    if (req.has_header("Authorization")) {
      std::string value = req.get_header_value("Authorization");
      if (value.rfind("Bearer ", 0) == 0) {
        std::string token = value.substr(7);
        std::lock_guard lock(mutex);
        auto it = tokens.find(token);
        if (it != tokens.end() && std::chrono::steady_clock::now() < it->second) return true;
      }
      reply_json(res, 401, gateway_error(401, "Access denied due to an invalid or expired token."));
      r.status = 401;
      return false;
    }
    reply_json(res, options.missing_auth_status,
               gateway_error(options.missing_auth_status,
                             "Access denied due to missing subscription key. Make sure to include "
                             "subscription key when making requests to an API."));
    r.status = options.missing_auth_status;
    return false;
  }

  void fail(httplib::Response& res, RequestRecord& r, int status, const std::string& message) {
    reply_json(res, status, service_error(code_for(status), message));
    r.status = status;
  }

  void handle_token(const httplib::Request& req, httplib::Response& res) {
    RequestRecord r = start_record(Endpoint::token, req);
    if (!apply_fault(take_fault(Endpoint::token), Endpoint::token, res, r)) {
      if (!req.has_header("Ocp-Apim-Subscription-Key")) {
        // issueToken takes only the key.
        reply_json(res, 401,
                   gateway_error(401,
                                 "Access denied due to missing subscription key. Make sure "
                                 "to include subscription key when making requests to an "
                                 "API."));
        r.status = 401;
      } else if (authorised(req, res, r)) {
        std::string token;
        {
          std::lock_guard lock(mutex);
          token = "mock-jwt." + std::to_string(++token_serial) + ".signature";
          tokens[token] = std::chrono::steady_clock::now() + options.token_lifetime;
          ++counts.tokens_issued;
        }
        res.status = 200;
        res.set_content(token, "text/plain");
        r.status = 200;
      }
    }
    record(std::move(r));
  }

  void handle_short(const httplib::Request& req, httplib::Response& res) {
    RequestRecord r = start_record(Endpoint::short_audio, req);
    run_short(req, res, r);
    record(std::move(r));
  }

  void run_short(const httplib::Request& req, httplib::Response& res, RequestRecord& r) {
    if (apply_fault(take_fault(Endpoint::short_audio), Endpoint::short_audio, res, r)) return;
    if (!authorised(req, res, r)) return;
    std::string language = req.get_param_value("language");
    if (language.empty()) return fail(res, r, 400, "The language parameter is missing.");
    std::string format = req.has_param("format") ? req.get_param_value("format") : "simple";
    if (format != "simple" && format != "detailed") {
      return fail(res, r, 400, "Invalid format '" + format + "': simple or detailed.");
    }
    std::string profanity =
        req.has_param("profanity") ? req.get_param_value("profanity") : "masked";
    if (profanity != "masked" && profanity != "removed" && profanity != "raw") {
      return fail(res, r, 400, "Invalid profanity '" + profanity + "': masked, removed or raw.");
    }
    std::string type = lower(req.get_header_value("Content-Type"));
    bool wav_type = type.rfind("audio/wav", 0) == 0;
    bool ogg_type = type.rfind("audio/ogg", 0) == 0;
    if (!wav_type && !ogg_type) {
      return fail(res, r, 415, "Unsupported Content-Type '" + type + "'.");
    }
    if (req.body.empty()) return fail(res, r, 408, "No audio data received.");
    auto body = std::as_bytes(std::span(req.body.data(), req.body.size()));
    bool codec_ok = wav_type ? (type.find("codecs=audio/pcm") != std::string::npos ||
                                type.find("codec=audio/pcm") != std::string::npos)
                             : (type.find("codecs=opus") != std::string::npos ||
                                type.find("codec=opus") != std::string::npos);
    Audio audio = read_audio(body);
    if (wav_type) {
      if (!audio.wav_ok) return fail(res, r, 400, "Invalid audio: " + audio.wav_problem + ".");
      if (audio.seconds > 60.0) return fail(res, r, 400, "Audio longer than 60 seconds.");
    }
    if (ogg_type && (body.size() < 4 || std::memcmp(body.data(), "OggS", 4) != 0)) codec_ok = false;
    bool pcm16k = !wav_type || (audio.format == 1 && audio.rate == 16000 && audio.channels == 1 &&
                                audio.bits == 16);
    res.set_header("X-RequestId", next_request_id());
    Generated g = generate(body);
    if (!codec_ok || !pcm16k || g.phrases.empty()) {
      // Unsupported codecs and silence both come back as InitialSilenceTimeout.
      reply_json(res, 200,
                 json{{"RecognitionStatus", "InitialSilenceTimeout"},
                      {"Offset", static_cast<std::int64_t>(audio.seconds * 1e7)},
                      {"Duration", 0}}
                     .dump());
      r.status = 200;
      return;
    }
    std::string display;
    std::string lexical;
    for (const auto& words : g.phrases) {
      display += (display.empty() ? "" : " ") + phrase_text(words);
      lexical += (lexical.empty() ? "" : " ") + phrase_lexical(words);
    }
    std::int64_t offset = 1'000'000;  // 100 ms
    std::int64_t duration =
        std::max<std::int64_t>(0, static_cast<std::int64_t>(audio.seconds * 1e7) - offset);
    json out = {{"RecognitionStatus", "Success"}, {"Offset", offset}, {"Duration", duration}};
    if (format == "simple") {
      out["DisplayText"] = display;
    } else {
      out["NBest"] = json::array({{{"Confidence", 0.9},
                                   {"Lexical", lexical},
                                   {"ITN", lexical},
                                   {"MaskedITN", lexical},
                                   {"Display", display}},
                                  {{"Confidence", 0.5},
                                   {"Lexical", lexical + " uh"},
                                   {"ITN", lexical + " uh"},
                                   {"MaskedITN", lexical + " uh"},
                                   {"Display", display + " Uh."}}});
    }
    reply_json(res, 200, out.dump());
    r.status = 200;
  }

  void handle_fast(const httplib::Request& req, httplib::Response& res) {
    RequestRecord r = start_record(Endpoint::fast, req);
    if (req.has_file("definition")) r.definition = req.get_file_value("definition").content;
    run_fast(req, res, r);
    record(std::move(r));
  }

  void run_fast(const httplib::Request& req, httplib::Response& res, RequestRecord& r) {
    if (apply_fault(take_fault(Endpoint::fast), Endpoint::fast, res, r)) return;
    if (!authorised(req, res, r)) return;
    std::string version = req.get_param_value("api-version");
    if (version.empty()) return fail(res, r, 400, "The api-version query parameter is missing.");
    if (std::find(options.api_versions.begin(), options.api_versions.end(), version) ==
        options.api_versions.end()) {
      return fail(res, r, 400, "Unsupported api-version '" + version + "'.");
    }
    if (!req.is_multipart_form_data()) {
      return fail(res, r, 415, "Content-Type must be multipart/form-data.");
    }
    if (!req.has_file("definition")) return fail(res, r, 400, "The definition part is missing.");
    json def = json::parse(req.get_file_value("definition").content, nullptr, false);
    if (def.is_discarded() || !def.is_object()) {
      return fail(res, r, 400, "The definition is not a JSON object.");
    }
    std::vector<std::string> locales;
    if (def.contains("locales")) {
      if (!def["locales"].is_array()) return fail(res, r, 400, "locales must be an array.");
      for (const auto& l : def["locales"]) {
        if (!l.is_string()) return fail(res, r, 400, "locales must hold strings.");
        locales.push_back(l.get<std::string>());
      }
    }
    if (def.contains("profanityFilterMode")) {
      static const std::set<std::string> modes = {"None", "Masked", "Removed", "Tags"};
      if (!def["profanityFilterMode"].is_string() ||
          modes.count(def["profanityFilterMode"].get<std::string>()) == 0) {
        return fail(res, r, 400, "profanityFilterMode must be None, Masked, Removed or Tags.");
      }
    }
    bool diarization = false;
    if (def.contains("diarization")) {
      const auto& d = def["diarization"];
      diarization = d.is_object() && d.value("enabled", false);
      if (diarization) {
        int max_speakers = d.value("maxSpeakers", 2);
        if (max_speakers < 2 || max_speakers > 35) {
          return fail(res, r, 400, "diarization.maxSpeakers must be 2..35.");
        }
      }
    }
    std::vector<int> channels;
    if (def.contains("channels")) {
      if (!def["channels"].is_array()) return fail(res, r, 400, "channels must be an array.");
      for (const auto& c : def["channels"]) {
        if (!c.is_number_integer() || (c.get<int>() != 0 && c.get<int>() != 1)) {
          return fail(res, r, 400, "channels may only hold 0 and 1.");
        }
        channels.push_back(c.get<int>());
      }
      if (channels.size() == 2 && diarization) {
        return fail(res, r, 400, "channels [0,1] cannot be combined with diarization.");
      }
    }
    if (!req.has_file("audio")) {
      if (version != "2024-11-15" && def.contains("audioUrl")) {
        return fail(res, r, 400, "audioUrl is not supported by this mock.");
      }
      return fail(res, r, 400, "The audio part is missing.");
    }
    const std::string& content = req.get_file_value("audio").content;
    if (content.empty()) return fail(res, r, 400, "The audio is empty.");
    auto body = std::as_bytes(std::span(content.data(), content.size()));
    Audio audio = read_audio(body);
    if (audio.wav && !audio.wav_ok) {
      return fail(res, r, 422, "The audio could not be decoded: " + audio.wav_problem + ".");
    }
    Generated g = generate(body);
    std::string locale = locales.empty() ? "en-US" : locales.front();
    json phrases = json::array();
    std::string combined;
    for (std::size_t i = 0; i < g.phrases.size(); ++i) {
      std::int64_t offset = static_cast<std::int64_t>(i) * 5000 + 100;
      std::int64_t duration =
          std::clamp<std::int64_t>(static_cast<std::int64_t>(g.seconds * 1000) - offset, 100, 4000);
      json words = json::array();
      const auto& ws = g.phrases[i];
      for (std::size_t w = 0; w < ws.size(); ++w) {
        words.push_back(
            {{"text", ws[w]},
             {"offsetMilliseconds", offset + static_cast<std::int64_t>(w) * duration / 4},
             {"durationMilliseconds", duration / 5}});
      }
      json phrase = {{"offsetMilliseconds", offset},
                     {"durationMilliseconds", duration},
                     {"text", phrase_text(ws)},
                     {"words", std::move(words)},
                     {"locale", locale},
                     {"confidence", 0.9}};
      if (diarization) phrase["speaker"] = static_cast<int>(i % 2) + 1;
      if (!channels.empty()) phrase["channel"] = channels.front();
      phrases.push_back(std::move(phrase));
      combined += (combined.empty() ? "" : " ") + phrase_text(ws);
    }
    json combined_phrases = json::array();
    if (!combined.empty()) combined_phrases.push_back({{"text", combined}});
    res.set_header("apim-request-id", next_request_id());
    reply_json(res, 200,
               json{{"durationMilliseconds", static_cast<std::int64_t>(g.seconds * 1000)},
                    {"combinedPhrases", std::move(combined_phrases)},
                    {"phrases", std::move(phrases)}}
                   .dump());
    r.status = 200;
  }
};

MockServer::MockServer(MockOptions options) : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.options = std::move(options);
  std::size_t threads = std::max<std::size_t>(2, m.options.threads);
  m.server.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  m.server.set_tcp_nodelay(true);  // headers and body are separate writes: no Nagle delay
  m.server.set_keep_alive_timeout(2);
  m.server.set_keep_alive_max_count(1000);
  m.server.set_payload_max_length(std::size_t{512} << 20);
  m.server.set_read_timeout(10);
  m.server.Post("/sts/v1.0/issueToken",
                [&m](const httplib::Request& q, httplib::Response& s) { m.handle_token(q, s); });
  // Regional form and custom-domain form (/stt/...), all three recognition modes.
  m.server.Post(
      R"((/stt)?/speech/recognition/(conversation|interactive|dictation)/cognitiveservices/v1)",
      [&m](const httplib::Request& q, httplib::Response& s) { m.handle_short(q, s); });
  m.server.Post(R"(/speechtotext/transcriptions:transcribe)",
                [&m](const httplib::Request& q, httplib::Response& s) { m.handle_fast(q, s); });
  m.server.set_error_handler([&m](const httplib::Request& q, httplib::Response& s) {
    if (!s.body.empty()) return;
    // Routing and framing errors from httplib itself (no such path, unreadable request, ...).
    int status = s.status;
    reply_json(s, status,
               service_error(code_for(status), status == 404 ? "No such endpoint: " + q.path
                                                             : "The request could not be read."));
    RequestRecord r = m.start_record(Endpoint::any, q);
    r.status = status;
    m.record(std::move(r));
  });
  m.port = m.server.bind_to_any_port("127.0.0.1");
  if (m.port <= 0) throw std::runtime_error("azure mock: cannot bind 127.0.0.1");
  // The socket is already listening: connections queue until the accept loop runs.
  m.thread = std::thread([&m] { m.server.listen_after_bind(); });
  // httplib 0.11's stop() does nothing until the accept loop has started: wait for it (bounded),
  // so that a mock destroyed right away still stops.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!m.server.is_running() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::microseconds(200));
}

MockServer::~MockServer() {
  stop();
}

void MockServer::stop() {
  {
    std::lock_guard lock(impl_->mutex);
    impl_->stopping = true;
  }
  impl_->wake.notify_all();
  impl_->server.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

int MockServer::port() const noexcept {
  return impl_->port;
}
std::string MockServer::base_url() const {
  return "http://127.0.0.1:" + std::to_string(port());
}
const MockOptions& MockServer::options() const noexcept {
  return impl_->options;
}

void MockServer::push_fault(Endpoint endpoint, Fault fault) {
  std::lock_guard lock(impl_->mutex);
  impl_->faults.emplace_back(endpoint, fault);
}

std::size_t MockServer::pending_faults() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->faults.size();
}

void MockServer::revoke_tokens() {
  std::lock_guard lock(impl_->mutex);
  impl_->tokens.clear();
}

Counters MockServer::counters() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->counts;
}

std::vector<RequestRecord> MockServer::requests() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->records;
}

}  // namespace procpool::azure_mock
