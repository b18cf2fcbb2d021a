#include "azure_transcription/client.hpp"

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstring>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "azure_transcription/wav.hpp"
#include "json_numbers.hpp"

namespace procpool::azure {

namespace {

using SteadyClock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr std::size_t max_response_bytes = std::size_t{64} << 20;

double ms_between(SteadyClock::time_point a, SteadyClock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string trim(std::string_view s) {
  auto first = s.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) return {};
  auto last = s.find_last_not_of(" \t\r\n");
  return std::string(s.substr(first, last - first + 1));
}

// "audio/wav; codecs=audio/pcm" -> "audio/wav".
std::string media_type(std::string_view content_type) {
  return lower(trim(content_type.substr(0, content_type.find(';'))));
}

bool is_wav_type(const std::string& type) {
  return type == "audio/wav" || type == "audio/x-wav" || type == "audio/wave" ||
         type == "audio/vnd.wave";
}

bool is_ogg_type(const std::string& type) {
  return type == "audio/ogg" || type == "audio/opus";
}

// Formats fast transcription takes besides WAV and OGG (contract section 2).
bool is_fast_only_type(const std::string& type) {
  static const char* const types[] = {
      "audio/mpeg",  "audio/mp3",  "audio/flac",   "audio/x-flac", "audio/x-ms-wma",
      "audio/aac",   "audio/amr",  "audio/webm",   "audio/speex",  "audio/ogg; codecs=speex",
      "audio/basic", "video/webm", "audio/x-speex"};
  return std::find(std::begin(types), std::end(types), type) != std::end(types);
}

[[noreturn]] void invalid_request(std::string message) {
  throw AzureError(AzureError::make(ErrorKind::invalid_request, std::move(message)));
}

bool valid_locale(const std::string& locale) {
  if (locale.size() < 2 || locale.size() > 35) return false;
  return std::all_of(locale.begin(), locale.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-';
  });
}

std::string url_encode(std::string_view s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += c;
    } else {
      out += '%';
      out += hex[u >> 4];
      out += hex[u & 15];
    }
  }
  return out;
}

std::string origin_of(const std::string& url) {
  auto scheme_end = url.find("://");
  if (scheme_end == std::string::npos) return url;
  auto path = url.find_first_of("/?#", scheme_end + 3);
  return lower(url.substr(0, path));
}

std::string host_of(const std::string& url) {
  std::string origin = origin_of(url);
  auto scheme_end = origin.find("://");
  return scheme_end == std::string::npos ? origin : origin.substr(scheme_end + 3);
}

// ---- the bounded handle cache ------------------------------------------------------------------

struct CachedHandle {
  CURL* handle = nullptr;
  std::string origin;
  std::uint64_t last_used = 0;
};

class HandleCache {
 public:
  explicit HandleCache(std::size_t capacity) : capacity_(capacity) {}
  ~HandleCache() {
    for (auto& h : handles_)
      curl_easy_cleanup(h.handle);
  }
  HandleCache(const HandleCache&) = delete;
  HandleCache& operator=(const HandleCache&) = delete;

  // The handle for `origin`, reset to defaults but keeping its connections and TLS sessions.
  CURL* acquire(const std::string& origin) {
    ++tick_;
    for (auto& h : handles_) {
      if (h.origin == origin) {
        h.last_used = tick_;
        curl_easy_reset(h.handle);
        return h.handle;
      }
    }
    if (handles_.size() >= capacity_) {
      auto oldest = std::min_element(
          handles_.begin(), handles_.end(),
          [](const CachedHandle& a, const CachedHandle& b) { return a.last_used < b.last_used; });
      curl_easy_cleanup(oldest->handle);
      handles_.erase(oldest);
      ++evicted_;
    }
    CURL* handle = curl_easy_init();
    if (handle == nullptr) {
      throw AzureError(AzureError::make(ErrorKind::connection, "curl_easy_init failed"));
    }
    ++created_;
    handles_.push_back({handle, origin, tick_});
    return handle;
  }

  std::uint64_t created() const noexcept { return created_; }
  std::uint64_t evicted() const noexcept { return evicted_; }
  std::size_t size() const noexcept { return handles_.size(); }

 private:
  std::size_t capacity_;
  std::vector<CachedHandle> handles_;
  std::uint64_t tick_ = 0;
  std::uint64_t created_ = 0;
  std::uint64_t evicted_ = 0;
};

// ---- one HTTP exchange
// ---------------------------------------------------------------------------

struct Upload {
  std::span<const std::byte> data;
  std::size_t position = 0;
};

std::size_t read_upload(char* buffer, std::size_t size, std::size_t count, void* user) {
  auto* up = static_cast<Upload*>(user);
  std::size_t n = std::min(size * count, up->data.size() - up->position);
  std::memcpy(buffer, up->data.data() + up->position, n);
  up->position += n;
  return n;
}

int seek_upload(void* user, curl_off_t offset, int origin) {
  auto* up = static_cast<Upload*>(user);
  if (origin != SEEK_SET || offset < 0 || static_cast<std::size_t>(offset) > up->data.size()) {
    return CURL_SEEKFUNC_CANTSEEK;
  }
  up->position = static_cast<std::size_t>(offset);
  return CURL_SEEKFUNC_OK;
}

struct Outgoing {
  std::string url;
  std::vector<std::string> headers;
  // Exactly one of these describes the body.
  std::span<const std::byte> raw;  // raw body (short audio)
  bool chunked = false;
  bool multipart = false;  // fast transcription: `audio` + `definition`
  std::string audio_content_type;
  std::string definition;
  bool empty_post = false;  // issueToken
};

struct Incoming {
  CURLcode curl = CURLE_OK;
  std::string curl_error;
  long status = 0;
  std::string body;
  std::map<std::string, std::string> headers;  // lower-case names, last block only
  bool body_truncated = false;
};

std::size_t write_body(char* data, std::size_t size, std::size_t count, void* user) {
  auto* in = static_cast<Incoming*>(user);
  std::size_t n = size * count;
  if (in->body.size() + n > max_response_bytes) {
    in->body_truncated = true;
    return 0;  // aborts the transfer
  }
  in->body.append(data, n);
  return n;
}

std::size_t write_header(char* data, std::size_t size, std::size_t count, void* user) {
  auto* in = static_cast<Incoming*>(user);
  std::string_view line(data, size * count);
  if (line.starts_with("HTTP/")) {
    in->headers.clear();  // a new response block (e.g. after 100 Continue)
  } else if (auto colon = line.find(':'); colon != std::string_view::npos) {
    in->headers[lower(trim(line.substr(0, colon)))] = trim(line.substr(colon + 1));
  }
  return size * count;
}

struct Slist {
  curl_slist* list = nullptr;
  ~Slist() { curl_slist_free_all(list); }
  void add(const std::string& line) {
    curl_slist* next = curl_slist_append(list, line.c_str());
    if (next == nullptr) throw std::bad_alloc();
    list = next;
  }
};

struct Mime {
  curl_mime* mime = nullptr;
  ~Mime() { curl_mime_free(mime); }
};

void once_global_init() {
  static std::once_flag flag;
  std::call_once(flag, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

// ---- Azure's answers --------------------------------------------------------------------------

struct ErrorBody {
  std::string code;
  std::string message;
};

std::string json_text(const nlohmann::json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_null()) return {};
  return v.dump();
}

// Both shapes: {"error":{"code","message"}} (gateway) and {"code","message",...} (service).
ErrorBody parse_error_body(const std::string& body) {
  ErrorBody e;
  auto j = nlohmann::json::parse(body, nullptr, false);
  if (!j.is_discarded() && j.is_object()) {
    const nlohmann::json* src = &j;
    if (j.contains("error") && j["error"].is_object()) src = &j["error"];
    if (src->contains("code")) e.code = json_text((*src)["code"]);
    if (src->contains("message")) e.message = json_text((*src)["message"]);
    if (e.message.empty() && src->contains("Message")) e.message = json_text((*src)["Message"]);
  }
  if (e.message.empty() && !body.empty()) e.message = body.substr(0, 300);
  return e;
}

std::int64_t ticks(const nlohmann::json& j, const char* name) {
  if (!j.contains(name)) return 0;
  const auto& v = j[name];
  if (v.is_number())
    return detail::checked_integer<std::int64_t>(v, detail::Floats::truncate).value_or(0);
  if (v.is_string()) {  // the docs show "Offset": "1800000"
    const std::string s = v.get<std::string>();
    std::int64_t out = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    if (ec == std::errc() && end == s.data() + s.size()) return out;
  }
  throw nlohmann::json::type_error::create(302, std::string(name) + " is not a number", &j);
}

void parse_short_audio(const std::string& body, TranscribeResponse& out) {
  auto j = nlohmann::json::parse(body);
  out.status = j.at("RecognitionStatus").get<std::string>();
  out.offset_ticks = ticks(j, "Offset");
  out.duration_ticks = ticks(j, "Duration");
  if (j.contains("NBest") && j["NBest"].is_array()) {
    for (const auto& n : j["NBest"]) {
      NBestEntry e;
      e.confidence = n.value("Confidence", 0.0);
      e.lexical = n.value("Lexical", "");
      e.itn = n.value("ITN", "");
      e.masked_itn = n.value("MaskedITN", "");
      e.display = n.value("Display", "");
      out.nbest.push_back(std::move(e));
    }
  }
  out.display_text = j.value("DisplayText", "");
  if (out.display_text.empty() && !out.nbest.empty()) out.display_text = out.nbest[0].display;
}

void parse_fast(const std::string& body, TranscribeResponse& out) {
  auto j = nlohmann::json::parse(body);
  out.audio_duration_ms = detail::integer_or<std::int64_t>(j, "durationMilliseconds", 0);
  std::string combined;
  if (j.contains("combinedPhrases")) {
    for (const auto& c : j.at("combinedPhrases")) {
      std::string t = c.value("text", "");
      if (t.empty()) continue;
      if (!combined.empty()) combined += ' ';
      combined += t;
    }
  }
  if (j.contains("phrases")) {
    for (const auto& p : j.at("phrases")) {
      Phrase phrase;
      phrase.text = p.value("text", "");
      phrase.offset_ms = detail::integer_or<std::int64_t>(p, "offsetMilliseconds", 0);
      phrase.duration_ms = detail::integer_or<std::int64_t>(p, "durationMilliseconds", 0);
      phrase.locale = p.value("locale", "");
      phrase.confidence = p.value("confidence", 0.0);
      if (p.contains("speaker")) phrase.speaker = detail::checked_integer<int>(p["speaker"]);
      if (p.contains("channel")) phrase.channel = detail::checked_integer<int>(p["channel"]);
      if (p.contains("words")) {
        for (const auto& w : p["words"]) {
          phrase.words.push_back({w.value("text", ""),
                                  detail::integer_or<std::int64_t>(w, "offsetMilliseconds", 0),
                                  detail::integer_or<std::int64_t>(w, "durationMilliseconds", 0)});
        }
      }
      out.phrases.push_back(std::move(phrase));
    }
  }
  out.display_text = combined;
  if (out.phrases.empty()) {
    out.status = "NoMatch";
  } else {
    out.status = "Success";
    std::int64_t first = out.phrases.front().offset_ms;
    std::int64_t last = first;
    for (const auto& p : out.phrases)
      last = std::max(last, p.offset_ms + p.duration_ms);
    out.offset_ticks = first * 10'000;
    out.duration_ticks = (last - first) * 10'000;
  }
}

std::string request_id_of(const Incoming& in) {
  for (const char* name : {"apim-request-id", "x-requestid", "x-ms-request-id", "request-id"}) {
    if (auto it = in.headers.find(name); it != in.headers.end()) return it->second;
  }
  return {};
}

std::optional<milliseconds> retry_after(const Incoming& in) {
  auto it = in.headers.find("retry-after");
  if (it == in.headers.end()) return std::nullopt;
  std::int64_t seconds = 0;
  const std::string& s = it->second;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), seconds);
  if (ec != std::errc() || end != s.data() + s.size() || seconds < 0) return std::nullopt;
  return milliseconds(std::min<std::int64_t>(seconds, 3600) * 1000);
}

std::string fast_profanity(Profanity p) {
  switch (p) {
    case Profanity::masked:
      return "Masked";
    case Profanity::removed:
      return "Removed";
    case Profanity::raw:
      return "None";
    case Profanity::tags:
      return "Tags";
  }
  return "Masked";
}

}  // namespace

std::chrono::milliseconds backoff_delay(unsigned retry, std::chrono::milliseconds initial,
                                        std::chrono::milliseconds max, double unit_random) {
  double base = static_cast<double>(initial.count()) * std::pow(2.0, retry > 0 ? retry - 1 : 0);
  base = std::min(base, static_cast<double>(max.count()));
  double factor = 0.5 + 0.5 * std::clamp(unit_random, 0.0, 1.0);
  return milliseconds(static_cast<std::int64_t>(base * factor));
}

bool is_retryable_status(int status) noexcept {
  return status == 408 || status == 429 || status == 500 || status == 502 || status == 503 ||
         status == 504;
}

// ---- the Transcriber
// -----------------------------------------------------------------------------

struct Transcriber::Impl {
  AzureConfig config;
  Transcriber::ClockFn clock;
  HandleCache cache;
  ClientStats counters;
  std::mt19937_64 random{std::random_device{}()};
  std::string token;
  SteadyClock::time_point token_expiry{};

  Impl(AzureConfig c, Transcriber::ClockFn k)
      : config(std::move(c)), clock(std::move(k)), cache(config.handle_cache_capacity) {
    if (!clock) clock = [] { return SteadyClock::now(); };
  }

  // Removes the key and the token from text that may be shown to someone.
  std::string redact(std::string text) const {
    for (const std::string* secret : {&config.key, &token}) {
      if (secret->empty()) continue;
      for (auto at = text.find(*secret); at != std::string::npos; at = text.find(*secret, at)) {
        text.replace(at, secret->size(), "[redacted]");
        at += 10;
      }
    }
    return text;
  }

  Incoming perform(const Outgoing& out, milliseconds timeout) {
    CURL* h = cache.acquire(origin_of(out.url));
    Incoming in;
    char errbuf[CURL_ERROR_SIZE] = {};
    Slist headers;
    for (const auto& line : out.headers)
      headers.add(line);
    Upload upload{out.raw, 0};
    Mime mime;

    curl_easy_setopt(h, CURLOPT_URL, out.url.c_str());
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, config.allow_http ? "http,https" : "https");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS,
                     static_cast<long>(std::max<long long>(1, timeout.count())));
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                     static_cast<long>(std::max<long long>(
                         1, std::min(timeout, config.connect_timeout).count())));
    curl_easy_setopt(h, CURLOPT_EXPECT_100_TIMEOUT_MS,
                     static_cast<long>(config.expect_continue_timeout.count()));
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &in);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, write_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &in);
    curl_easy_setopt(h, CURLOPT_POST, 1L);

    std::size_t body_bytes = 0;
    if (out.empty_post) {
      curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
      curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t{0});
    } else if (out.multipart) {
      mime.mime = curl_mime_init(h);
      curl_mimepart* audio = curl_mime_addpart(mime.mime);
      curl_mime_name(audio, "audio");
      curl_mime_data_cb(audio, static_cast<curl_off_t>(out.raw.size()), read_upload, seek_upload,
                        nullptr, &upload);
      curl_mime_filename(audio, "audio");
      curl_mime_type(audio, out.audio_content_type.c_str());
      curl_mimepart* definition = curl_mime_addpart(mime.mime);
      curl_mime_name(definition, "definition");
      curl_mime_data(definition, out.definition.c_str(), CURL_ZERO_TERMINATED);
      curl_easy_setopt(h, CURLOPT_MIMEPOST, mime.mime);
      body_bytes = out.raw.size() + out.definition.size();
    } else {
      curl_easy_setopt(h, CURLOPT_READFUNCTION, read_upload);
      curl_easy_setopt(h, CURLOPT_READDATA, &upload);
      curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, seek_upload);
      curl_easy_setopt(h, CURLOPT_SEEKDATA, &upload);
      if (out.chunked) {
        headers.add("Transfer-Encoding: chunked");
      } else {
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(out.raw.size()));
      }
      body_bytes = out.raw.size();
    }
    // Expect: 100-continue only when it saves something (big bodies) or for chunked uploads.
    if (out.chunked || body_bytes >= config.expect_continue_min_bytes) {
      headers.add("Expect: 100-continue");
    } else {
      headers.add("Expect:");
    }
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers.list);

    in.curl = curl_easy_perform(h);
    if (in.curl != CURLE_OK) {
      in.curl_error = errbuf[0] != '\0' ? errbuf : curl_easy_strerror(in.curl);
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &in.status);
    // The handle must not keep pointers into this frame.
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, nullptr);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, nullptr);
    curl_easy_setopt(h, CURLOPT_MIMEPOST, nullptr);
    return in;
  }

  // The result of one attempt, successful or not.
  struct Attempt {
    bool ok = false;
    TranscribeResponse response;
    AzureError::Details error;
    std::optional<milliseconds> retry_after;
    bool unauthorized_with_token = false;
  };

  AzureError::Details failure_from(const Incoming& in, const std::string& what) {
    AzureError::Details d;
    d.request_id = request_id_of(in);
    if (in.curl != CURLE_OK && in.status == 0) {
      d.retryable = true;
      switch (in.curl) {
        case CURLE_OPERATION_TIMEDOUT:
          d.kind = ErrorKind::timeout;
          break;
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_CONNECT:
        case CURLE_SEND_ERROR:
        case CURLE_RECV_ERROR:
        case CURLE_GOT_NOTHING:
        case CURLE_PARTIAL_FILE:
        case CURLE_SSL_CONNECT_ERROR:
          d.kind = ErrorKind::connection;
          break;
        default:
          d.kind = ErrorKind::connection;
          d.retryable = false;
      }
      d.message = what + ": " + (d.kind == ErrorKind::timeout ? "timed out" : "connection failed") +
                  " talking to " + host_of(currently_used_url) + " (curl " +
                  std::to_string(static_cast<int>(in.curl)) + ": " + in.curl_error + ")";
      return d;
    }
    if (in.curl != CURLE_OK) {
      // Got a status line, then the connection broke (dropped mid-response).
      d.kind = ErrorKind::connection;
      d.retryable = true;
      d.http_status = static_cast<int>(in.status);
      d.message = what + ": the connection to " + host_of(currently_used_url) +
                  " broke during the response (curl " + std::to_string(static_cast<int>(in.curl)) +
                  ": " + in.curl_error + ")";
      return d;
    }
    ErrorBody body = parse_error_body(in.body);
    d.http_status = static_cast<int>(in.status);
    d.code = body.code;
    d.retryable = is_retryable_status(d.http_status);
    if (d.http_status == 401 || d.http_status == 403) {
      d.kind = ErrorKind::authentication;
    } else if (d.http_status == 408) {
      d.kind = ErrorKind::timeout;
    } else if (d.http_status == 429) {
      d.kind = ErrorKind::throttled;
    } else if (d.http_status >= 500) {
      d.kind = ErrorKind::service_error;
    } else {
      d.kind = ErrorKind::bad_request;
    }
    d.message = what + ": HTTP " + std::to_string(d.http_status) +
                (body.code.empty() ? "" : " " + body.code) +
                (body.message.empty() ? "" : ": " + body.message);
    return d;
  }

  std::string currently_used_url;

  // Fetches a token if there is none or it is older than token_lifetime.
  std::optional<AzureError::Details> ensure_token(milliseconds timeout, bool force) {
    if (!force && !token.empty() && clock() < token_expiry) return std::nullopt;
    token.clear();
    Outgoing out;
    out.url = config.resolved_token_url();
    out.headers = {"Ocp-Apim-Subscription-Key: " + config.key};
    out.empty_post = true;
    currently_used_url = out.url;
    Incoming in = perform(out, timeout);
    if (in.curl == CURLE_OK && in.status == 200 && !trim(in.body).empty()) {
      token = trim(in.body);
      token_expiry = clock() + config.token_lifetime;
      ++counters.tokens_fetched;
      return std::nullopt;
    }
    if (in.curl == CURLE_OK && in.status == 200) {
      AzureError::Details d =
          AzureError::make(ErrorKind::bad_response, "issueToken returned an empty token");
      d.http_status = 200;
      return d;
    }
    return failure_from(in, "issueToken failed");
  }

  std::string auth_header() const {
    if (config.auth == AuthMode::token) return "Authorization: Bearer " + token;
    return "Ocp-Apim-Subscription-Key: " + config.key;
  }

  Outgoing build(const TranscribeRequest& request, Api api) const {
    Outgoing out;
    out.raw = std::span<const std::byte>(request.audio);
    std::string type = media_type(request.content_type);
    if (api == Api::short_audio) {
      out.url = config.resolved_short_audio_url() +
                "?language=" + url_encode(request.locales.at(0)) +
                "&format=" + std::string(to_string(request.format)) +
                "&profanity=" + std::string(to_string(request.profanity));
      out.headers.push_back(is_wav_type(type)
                                ? "Content-Type: audio/wav; codecs=audio/pcm; samplerate=16000"
                                : "Content-Type: audio/ogg; codecs=opus");
      out.chunked = config.chunked_upload;
    } else {
      out.url = config.resolved_fast_url() + "?api-version=" + url_encode(config.fast_api_version);
      out.multipart = true;
      out.audio_content_type = request.content_type;
      nlohmann::json definition = nlohmann::json::object();
      if (!request.locales.empty()) definition["locales"] = request.locales;
      definition["profanityFilterMode"] = fast_profanity(request.profanity);
      if (request.diarization) {
        definition["diarization"] = {{"enabled", true}, {"maxSpeakers", request.max_speakers}};
      }
      if (!request.channels.empty()) definition["channels"] = request.channels;
      out.definition = definition.dump();
    }
    out.headers.push_back("Accept: application/json");
    return out;
  }

  Attempt attempt(const TranscribeRequest& request, Api api, milliseconds timeout) {
    Attempt a;
    auto started = SteadyClock::now();
    if (config.auth == AuthMode::token) {
      if (auto failure = ensure_token(timeout, false)) {
        a.error = *failure;
        return a;
      }
      timeout -= std::chrono::duration_cast<milliseconds>(SteadyClock::now() - started);
      if (timeout.count() <= 0) {
        a.error = AzureError::make(ErrorKind::timeout, "no time left after issueToken");
        a.error.retryable = true;
        return a;
      }
    }
    Outgoing out = build(request, api);
    out.headers.push_back(auth_header());
    currently_used_url = out.url;
    ++counters.http_attempts;
    Incoming in = perform(out, timeout);
    const char* what =
        api == Api::short_audio ? "short-audio recognition failed" : "fast transcription failed";
    if (in.curl != CURLE_OK || in.status < 200 || in.status >= 300) {
      a.error = failure_from(in, what);
      a.retry_after = retry_after(in);
      a.unauthorized_with_token = config.auth == AuthMode::token && in.status == 401;
      return a;
    }
    a.response.api = api;
    a.response.http_status = static_cast<int>(in.status);
    a.response.request_id = request_id_of(in);
    try {
      if (api == Api::short_audio) {
        parse_short_audio(in.body, a.response);
      } else {
        parse_fast(in.body, a.response);
      }
    } catch (const nlohmann::json::exception& e) {
      a.error =
          AzureError::make(ErrorKind::bad_response,
                           std::string(what) + ": could not read the 200 response: " + e.what());
      a.error.http_status = static_cast<int>(in.status);
      a.error.request_id = a.response.request_id;
      return a;
    }
    if (api == Api::short_audio && a.response.status == "Error") {
      a.error = AzureError::make(ErrorKind::service_error,
                                 std::string(what) + ": RecognitionStatus Error");
      a.error.http_status = static_cast<int>(in.status);
      a.error.code = "Error";
      a.error.request_id = a.response.request_id;
      a.error.retryable = true;
      return a;
    }
    a.response.last_attempt_ms = ms_between(started, SteadyClock::now());
    a.ok = true;
    return a;
  }

  Api choose(const TranscribeRequest& request) const {
    if (request.audio.empty()) invalid_request("the audio is empty");
    std::string type = media_type(request.content_type);
    if (type.empty()) invalid_request("no content type given for the audio");
    bool wav = is_wav_type(type);
    bool ogg = is_ogg_type(type);
    if (!wav && !ogg && !is_fast_only_type(type)) {
      invalid_request("unsupported content type \"" + request.content_type +
                      "\"; use audio/wav, audio/ogg (opus), audio/mpeg, audio/flac, audio/webm, "
                      "audio/aac, audio/amr, audio/x-ms-wma or audio/speex");
    }
    if (request.locales.size() > 10) invalid_request("at most 10 locales");
    for (const auto& locale : request.locales) {
      if (!valid_locale(locale)) invalid_request("\"" + locale + "\" is not a locale like en-US");
    }
    if (request.diarization && (request.max_speakers < 2 || request.max_speakers > 35)) {
      invalid_request("max_speakers must be 2..35, got " + std::to_string(request.max_speakers));
    }
    for (int ch : request.channels) {
      if (ch != 0 && ch != 1) invalid_request("channels may only hold 0 and 1");
    }
    if (request.channels.size() > 2 ||
        (request.channels.size() == 2 && request.channels[0] == request.channels[1])) {
      invalid_request("channels must be [0], [1] or [0,1]");
    }
    if (request.diarization && request.channels.size() == 2) {
      invalid_request("channels [0,1] cannot be combined with diarization");
    }
    if (ogg && request.audio.size() >= 4 && std::memcmp(request.audio.data(), "OggS", 4) != 0) {
      throw AzureError(AzureError::make(ErrorKind::invalid_audio,
                                        "invalid OGG: the data does not start with \"OggS\""));
    }
    std::optional<WavInfo> info;
    if (wav) info = parse_wav(request.audio);

    bool needs_fast = request.diarization || !request.channels.empty() ||
                      request.locales.size() != 1 || request.profanity == Profanity::tags;
    Api api = request.api;
    if (api == Api::automatic) {
      if (needs_fast) {
        api = Api::fast;
      } else if (wav) {
        api =
            is_short_audio_format(*info) && info->duration_seconds <= config.short_audio_max_seconds
                ? Api::short_audio
                : Api::fast;
      } else {
        api = Api::fast;  // no duration known: the endpoint that takes long files
      }
    }
    if (api == Api::short_audio) {
      if (request.locales.size() != 1) {
        invalid_request("short audio takes exactly one locale (language), got " +
                        std::to_string(request.locales.size()));
      }
      if (needs_fast) {
        invalid_request("diarization, channels and profanity mode tags need fast transcription");
      }
      if (!wav && !ogg) {
        invalid_request(
            "short audio takes audio/wav (16 kHz mono 16-bit PCM) or audio/ogg "
            "(opus), not \"" +
            request.content_type + "\"");
      }
      if (wav) {
        check_wav(*info, {.require_short_audio_format = true,
                          .max_seconds = config.short_audio_max_seconds});
      }
    } else {
      if (request.audio.size() > config.fast_max_bytes) {
        throw AzureError(AzureError::make(ErrorKind::invalid_audio,
                                          "the audio is " + std::to_string(request.audio.size()) +
                                              " bytes, over fast transcription's limit of " +
                                              std::to_string(config.fast_max_bytes)));
      }
      if (wav) check_wav(*info, {.max_seconds = config.fast_max_seconds});
    }
    return api;
  }
};

Transcriber::Transcriber(AzureConfig config, ClockFn clock) {
  config.validate();
  once_global_init();
  impl_ = std::make_unique<Impl>(std::move(config), std::move(clock));
}

Transcriber::~Transcriber() = default;

ClientStats Transcriber::stats() const noexcept {
  ClientStats s = impl_->counters;
  s.handles_created = impl_->cache.created();
  s.handles_evicted = impl_->cache.evicted();
  s.handles_cached = impl_->cache.size();
  return s;
}

const AzureConfig& Transcriber::config() const noexcept {
  return impl_->config;
}

Api Transcriber::choose_api(const TranscribeRequest& request) const {
  return impl_->choose(request);
}

TranscribeResponse Transcriber::transcribe(const TranscribeRequest& request,
                                           std::optional<SteadyClock::time_point> job_deadline) {
  Impl& m = *impl_;
  const auto started = SteadyClock::now();
  ++m.counters.requests;
  Api api = m.choose(request);  // throws before any network call

  milliseconds total =
      request.total_timeout.count() > 0 ? request.total_timeout : m.config.total_timeout;
  milliseconds per_attempt =
      request.attempt_timeout.count() > 0 ? request.attempt_timeout : m.config.attempt_timeout;
  auto deadline = started + total;
  if (job_deadline) {
    // Leave a margin so that this reports its own timeout before the pool kills the worker.
    auto left = *job_deadline - started;
    auto margin = std::min<SteadyClock::duration>(milliseconds(250), left / 10);
    deadline = std::min(deadline, *job_deadline - margin);
  }

  bool refreshed_token = false;
  unsigned attempts = 0;
  unsigned retries = 0;
  double backoff_total = 0;
  AzureError::Details last;
  // Bounded: each pass either returns, throws, or uses up a retry (the token refresh at most once).
  for (;;) {
    auto now = SteadyClock::now();
    if (now >= deadline) {
      AzureError::Details d = attempts == 0 ? AzureError::Details{} : last;
      d.kind = ErrorKind::timeout;
      d.message = "the deadline passed after " + std::to_string(attempts) + " attempt(s)" +
                  (attempts == 0 ? std::string() : "; last: " + last.message);
      d.attempts = attempts;
      d.message = m.redact(d.message);
      throw AzureError(std::move(d));
    }
    auto left = std::chrono::duration_cast<milliseconds>(deadline - now);
    ++attempts;
    Impl::Attempt a = m.attempt(request, api, std::min(per_attempt, left));
    if (a.ok) {
      a.response.attempts = attempts;
      a.response.backoff_ms = backoff_total;
      a.response.total_ms = ms_between(started, SteadyClock::now());
      return a.response;
    }
    last = a.error;
    last.attempts = attempts;
    last.message = m.redact(last.message);
    if (a.unauthorized_with_token && !refreshed_token) {
      // The cached token may have been revoked or expired early: fetch a new one, once.
      refreshed_token = true;
      m.token.clear();
      continue;
    }
    if (!last.retryable || retries >= m.config.max_retries) throw AzureError(last);
    ++retries;
    ++m.counters.retries;
    std::uniform_real_distribution<double> unit(0.0, 1.0);
    // Retry-After is honoured as given (the deadline below still bounds it).
    milliseconds delay = a.retry_after ? *a.retry_after
                                       : backoff_delay(retries, m.config.backoff_initial,
                                                       m.config.backoff_max, unit(m.random));
    if (SteadyClock::now() + delay >= deadline) {
      last.message += "; no time left for another attempt within the deadline";
      throw AzureError(last);
    }
    std::this_thread::sleep_for(delay);  // the backoff itself, inside the worker's job
    backoff_total += static_cast<double>(delay.count());
  }
}

}  // namespace procpool::azure
