// The Transcriber: validating a request and choosing its endpoint, the token, and the attempts
// with retries and backoff. One HTTP exchange is in http_exchange.cpp, Azure's JSON in
// azure_json.cpp.
#include "azure_transcription/client.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "azure_json.hpp"
#include "azure_transcription/wav.hpp"
#include "http_exchange.hpp"
#include "text.hpp"

namespace procpool::azure {

namespace {

using SteadyClock = std::chrono::steady_clock;
using detail::Incoming;
using detail::Outgoing;
using std::chrono::milliseconds;

double ms_between(SteadyClock::time_point a, SteadyClock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
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

// ---- the Transcriber ---------------------------------------------------------------------------

struct Transcriber::Impl {
  AzureConfig config;
  Transcriber::ClockFn clock;
  detail::HandleCache cache;
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

  // The result of one attempt, successful or not.
  struct Attempt {
    bool ok = false;
    TranscribeResponse response;
    AzureError::Details error;
    std::optional<milliseconds> retry_after;
    bool unauthorized_with_token = false;
  };

  // Fetches a token if there is none or it is older than token_lifetime.
  std::optional<AzureError::Details> ensure_token(milliseconds timeout, bool force) {
    if (!force && !token.empty() && clock() < token_expiry) return std::nullopt;
    token.clear();
    Outgoing out;
    out.url = config.resolved_token_url();
    out.headers = {"Ocp-Apim-Subscription-Key: " + config.key};
    out.empty_post = true;
    Incoming in = detail::perform(cache, config, out, timeout);
    if (in.curl == CURLE_OK && in.status == 200 && !detail::trim(in.body).empty()) {
      token = detail::trim(in.body);
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
    return detail::failure_from(in, "issueToken failed", out.url);
  }

  std::string auth_header() const {
    if (config.auth == AuthMode::token) return "Authorization: Bearer " + token;
    return "Ocp-Apim-Subscription-Key: " + config.key;
  }

  Outgoing build(const TranscribeRequest& request, Api api) const {
    Outgoing out;
    out.raw = std::span<const std::byte>(request.audio);
    std::string type = detail::media_type(request.content_type);
    if (api == Api::short_audio) {
      out.url = config.resolved_short_audio_url() +
                "?language=" + detail::url_encode(request.locales.at(0)) +
                "&format=" + std::string(to_string(request.format)) +
                "&profanity=" + std::string(to_string(request.profanity));
      out.headers.push_back(is_wav_type(type)
                                ? "Content-Type: audio/wav; codecs=audio/pcm; samplerate=16000"
                                : "Content-Type: audio/ogg; codecs=opus");
      out.chunked = config.chunked_upload;
    } else {
      out.url = config.resolved_fast_url() +
                "?api-version=" + detail::url_encode(config.fast_api_version);
      out.multipart = true;
      out.audio_content_type = request.content_type;
      out.definition = detail::fast_definition(request);
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
    ++counters.http_attempts;
    Incoming in = detail::perform(cache, config, out, timeout);
    const char* what =
        api == Api::short_audio ? "short-audio recognition failed" : "fast transcription failed";
    if (in.curl != CURLE_OK || in.status < 200 || in.status >= 300) {
      a.error = detail::failure_from(in, what, out.url);
      a.retry_after = detail::retry_after(in);
      a.unauthorized_with_token = config.auth == AuthMode::token && in.status == 401;
      return a;
    }
    a.response.api = api;
    a.response.http_status = static_cast<int>(in.status);
    a.response.request_id = detail::request_id_of(in);
    try {
      if (api == Api::short_audio) {
        detail::parse_short_audio(in.body, a.response);
      } else {
        detail::parse_fast(in.body, a.response);
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
    std::string type = detail::media_type(request.content_type);
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
  detail::init_curl_once();
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
