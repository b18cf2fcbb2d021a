#include "azure_transcription/config.hpp"

#include <charconv>
#include <cstdlib>
#include <string>

#include "azure_transcription/types.hpp"

extern char** environ;

namespace procpool::azure {

namespace {

[[noreturn]] void bad_config(std::string message) {
  throw AzureError(AzureError::make(ErrorKind::configuration, std::move(message)));
}

std::string trim_slash(std::string s) {
  while (!s.empty() && s.back() == '/')
    s.pop_back();
  return s;
}

bool starts_with_scheme(const std::string& url, bool allow_http) {
  return url.starts_with("https://") || (allow_http && url.starts_with("http://"));
}

std::uint64_t number(const std::map<std::string, std::string>& env, const char* name,
                     std::uint64_t fallback) {
  auto it = env.find(name);
  if (it == env.end() || it->second.empty()) return fallback;
  std::uint64_t value = 0;
  const std::string& s = it->second;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || end != s.data() + s.size()) {
    bad_config(std::string(name) + " must be a non-negative integer, got \"" + s + "\"");
  }
  return value;
}

bool flag(const std::map<std::string, std::string>& env, const char* name, bool fallback) {
  auto it = env.find(name);
  if (it == env.end() || it->second.empty()) return fallback;
  if (it->second == "1" || it->second == "true" || it->second == "yes") return true;
  if (it->second == "0" || it->second == "false" || it->second == "no") return false;
  bad_config(std::string(name) + " must be 1/0, true/false or yes/no, got \"" + it->second + "\"");
}

std::string text(const std::map<std::string, std::string>& env, const char* name) {
  auto it = env.find(name);
  return it == env.end() ? std::string() : it->second;
}

}  // namespace

std::string AzureConfig::resolved_short_audio_url() const {
  if (!short_audio_url.empty()) return short_audio_url;
  if (!endpoint.empty()) {
    return trim_slash(endpoint) + "/stt/speech/recognition/interactive/cognitiveservices/v1";
  }
  if (!region.empty()) {
    return "https://" + region +
           ".stt.speech.microsoft.com/speech/recognition/conversation/cognitiveservices/v1";
  }
  return {};
}

std::string AzureConfig::resolved_fast_url() const {
  if (!fast_url.empty()) return fast_url;
  if (!endpoint.empty()) return trim_slash(endpoint) + "/speechtotext/transcriptions:transcribe";
  if (!region.empty()) {
    return "https://" + region +
           ".api.cognitive.microsoft.com/speechtotext/transcriptions:transcribe";
  }
  return {};
}

std::string AzureConfig::resolved_token_url() const {
  if (!token_url.empty()) return token_url;
  if (!endpoint.empty()) return trim_slash(endpoint) + "/sts/v1.0/issueToken";
  if (!region.empty())
    return "https://" + region + ".api.cognitive.microsoft.com/sts/v1.0/issueToken";
  return {};
}

void AzureConfig::validate() const {
  if (key.empty()) bad_config("AZURE_SPEECH_KEY is not set (the Speech resource's key)");
  if (region.empty() && endpoint.empty() && (short_audio_url.empty() || fast_url.empty())) {
    bad_config("set AZURE_SPEECH_REGION (e.g. westeurope) or AZURE_SPEECH_ENDPOINT");
  }
  if (!region.empty() &&
      region.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789") != std::string::npos) {
    bad_config("AZURE_SPEECH_REGION must be a region name such as westeurope, got \"" + region +
               "\"");
  }
  for (const auto& [name, url] :
       {std::pair<const char*, std::string>{"short audio URL", resolved_short_audio_url()},
        {"fast transcription URL", resolved_fast_url()},
        {"token URL", resolved_token_url()}}) {
    if (!starts_with_scheme(url, allow_http)) {
      bad_config(std::string("the ") + name + " \"" + url + "\" must start with https://" +
                 (allow_http ? " or http://" : " (http:// needs AZURE_SPEECH_ALLOW_HTTP=1)"));
    }
  }
  if (fast_api_version.empty()) bad_config("AZURE_SPEECH_API_VERSION is empty");
  if (handle_cache_capacity == 0) bad_config("AZURE_SPEECH_HANDLE_CACHE must be at least 1");
  if (attempt_timeout.count() <= 0 || total_timeout.count() <= 0 || connect_timeout.count() <= 0) {
    bad_config("timeouts must be positive");
  }
  if (backoff_max < backoff_initial)
    bad_config("AZURE_SPEECH_BACKOFF_MAX_MS < AZURE_SPEECH_BACKOFF_MS");
  if (max_retries > 20) bad_config("AZURE_SPEECH_MAX_RETRIES must be at most 20");
}

AzureConfig config_from_env(const std::map<std::string, std::string>& env) {
  using std::chrono::milliseconds;
  AzureConfig c;
  c.key = text(env, "AZURE_SPEECH_KEY");
  c.region = text(env, "AZURE_SPEECH_REGION");
  c.endpoint = text(env, "AZURE_SPEECH_ENDPOINT");
  c.short_audio_url = text(env, "AZURE_SPEECH_SHORT_AUDIO_URL");
  c.fast_url = text(env, "AZURE_SPEECH_FAST_URL");
  c.token_url = text(env, "AZURE_SPEECH_TOKEN_URL");
  if (auto v = text(env, "AZURE_SPEECH_API_VERSION"); !v.empty()) c.fast_api_version = v;
  if (auto auth = text(env, "AZURE_SPEECH_AUTH"); !auth.empty()) {
    if (auth == "key") {
      c.auth = AuthMode::key;
    } else if (auth == "token") {
      c.auth = AuthMode::token;
    } else {
      bad_config("AZURE_SPEECH_AUTH must be key or token, got \"" + auth + "\"");
    }
  }
  c.max_retries = static_cast<unsigned>(number(env, "AZURE_SPEECH_MAX_RETRIES", c.max_retries));
  c.backoff_initial =
      milliseconds(number(env, "AZURE_SPEECH_BACKOFF_MS", c.backoff_initial.count()));
  c.backoff_max = milliseconds(number(env, "AZURE_SPEECH_BACKOFF_MAX_MS", c.backoff_max.count()));
  c.connect_timeout =
      milliseconds(number(env, "AZURE_SPEECH_CONNECT_TIMEOUT_MS", c.connect_timeout.count()));
  c.attempt_timeout =
      milliseconds(number(env, "AZURE_SPEECH_ATTEMPT_TIMEOUT_MS", c.attempt_timeout.count()));
  c.total_timeout =
      milliseconds(number(env, "AZURE_SPEECH_TOTAL_TIMEOUT_MS", c.total_timeout.count()));
  c.fast_max_seconds = static_cast<double>(
      number(env, "AZURE_SPEECH_FAST_MAX_SECONDS", static_cast<std::uint64_t>(c.fast_max_seconds)));
  c.fast_max_bytes = number(env, "AZURE_SPEECH_FAST_MAX_BYTES", c.fast_max_bytes);
  c.chunked_upload = flag(env, "AZURE_SPEECH_CHUNKED", c.chunked_upload);
  c.handle_cache_capacity = number(env, "AZURE_SPEECH_HANDLE_CACHE", c.handle_cache_capacity);
  c.allow_http = flag(env, "AZURE_SPEECH_ALLOW_HTTP", c.allow_http);
  return c;
}

AzureConfig config_from_environment() {
  std::map<std::string, std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string entry(*e);
    auto eq = entry.find('=');
    if (eq == std::string::npos) continue;
    std::string name = entry.substr(0, eq);
    if (name.starts_with("AZURE_SPEECH_")) env.emplace(std::move(name), entry.substr(eq + 1));
  }
  return config_from_env(env);
}

}  // namespace procpool::azure
