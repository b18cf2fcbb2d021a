// Configuration of the Azure Speech adapter, usually read from the environment.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

namespace procpool::azure {

/// How requests are authenticated.
enum class AuthMode {
  /// Ocp-Apim-Subscription-Key on every request.
  key,
  /// Authorization: Bearer, with a token from issueToken cached for `token_lifetime` and
  /// refreshed once when a request gets 401.
  token,
};

/// Everything the adapter needs to reach Azure. The key is never printed: the only way it leaves
/// the process is the Ocp-Apim-Subscription-Key header.
struct AzureConfig {
  std::string key;     // AZURE_SPEECH_KEY
  std::string region;  // AZURE_SPEECH_REGION, e.g. "westeurope"
  /// AZURE_SPEECH_ENDPOINT: a custom domain (https://NAME.cognitiveservices.azure.com) or a local
  /// mock (http://127.0.0.1:PORT). When set, it is the base of all three URLs below.
  std::string endpoint;
  /// Full URLs, overriding the ones derived from region/endpoint (AZURE_SPEECH_SHORT_AUDIO_URL,
  /// AZURE_SPEECH_FAST_URL, AZURE_SPEECH_TOKEN_URL).
  std::string short_audio_url;
  std::string fast_url;
  std::string token_url;
  /// AZURE_SPEECH_API_VERSION: fast transcription's api-version.
  std::string fast_api_version = "2024-11-15";

  AuthMode auth = AuthMode::key;                         // AZURE_SPEECH_AUTH=key|token
  std::chrono::milliseconds token_lifetime{9 * 60'000};  // a token is valid 10 min; reuse for 9

  unsigned max_retries = 3;                            // AZURE_SPEECH_MAX_RETRIES
  std::chrono::milliseconds backoff_initial{800};      // AZURE_SPEECH_BACKOFF_MS
  std::chrono::milliseconds backoff_max{120'000};      // AZURE_SPEECH_BACKOFF_MAX_MS
  std::chrono::milliseconds connect_timeout{10'000};   // AZURE_SPEECH_CONNECT_TIMEOUT_MS
  std::chrono::milliseconds attempt_timeout{120'000};  // AZURE_SPEECH_ATTEMPT_TIMEOUT_MS
  std::chrono::milliseconds total_timeout{300'000};    // AZURE_SPEECH_TOTAL_TIMEOUT_MS

  double short_audio_max_seconds = 60;         // the short-audio endpoint's limit
  double fast_max_seconds = 2 * 3600;          // AZURE_SPEECH_FAST_MAX_SECONDS (sources: 2-5 h)
  std::uint64_t fast_max_bytes = 250'000'000;  // AZURE_SPEECH_FAST_MAX_BYTES (sources: 250-500 MB)

  /// Upload short audio with Transfer-Encoding: chunked (AZURE_SPEECH_CHUNKED=1).
  bool chunked_upload = false;
  /// Bodies at least this large are sent with Expect: 100-continue; smaller ones without.
  std::size_t expect_continue_min_bytes = 1 << 20;
  /// How long curl waits for 100 Continue before sending the body anyway.
  std::chrono::milliseconds expect_continue_timeout{1000};

  /// Curl handles kept per worker, one per origin (scheme://host:port), least recently used
  /// evicted (AZURE_SPEECH_HANDLE_CACHE).
  std::size_t handle_cache_capacity = 4;

  /// Allow http:// (only for loopback mocks; AZURE_SPEECH_ALLOW_HTTP=1). Off: https only.
  bool allow_http = false;

  /// The three URLs actually used, derived from the fields above.
  std::string resolved_short_audio_url() const;
  std::string resolved_fast_url() const;
  std::string resolved_token_url() const;

  /// Throws AzureError(configuration) if the adapter cannot work: no key, neither region nor
  /// endpoint nor URLs, http:// without allow_http, zero capacity, ... Never names the key.
  void validate() const;
};

/// Reads AzureConfig from `env` (the variables named above). Unknown or malformed numbers throw
/// AzureError(configuration) naming the variable.
AzureConfig config_from_env(const std::map<std::string, std::string>& env);
/// Reads AzureConfig from the process environment.
AzureConfig config_from_environment();

}  // namespace procpool::azure
