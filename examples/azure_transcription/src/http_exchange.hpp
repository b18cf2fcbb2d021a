// The REST side of the adapter: one HTTP exchange with Azure through a bounded cache of curl
// handles, and what its outcome means when it failed.
#pragma once

#include <curl/curl.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "azure_transcription/config.hpp"
#include "azure_transcription/types.hpp"

namespace procpool::azure::detail {

/// One curl easy handle per origin (scheme://host:port), at most `capacity` of them, the least
/// recently used closed first: connections and TLS sessions are reused across jobs, and the cache
/// never grows past its bound.
class HandleCache {
 public:
  explicit HandleCache(std::size_t capacity) : capacity_(capacity) {}
  ~HandleCache();
  HandleCache(const HandleCache&) = delete;
  HandleCache& operator=(const HandleCache&) = delete;

  /// The handle for `origin`, reset to defaults but keeping its connections and TLS sessions.
  /// Throws AzureError(connection) if curl cannot make one.
  CURL* acquire(const std::string& origin);

  std::uint64_t created() const noexcept { return created_; }
  std::uint64_t evicted() const noexcept { return evicted_; }
  std::size_t size() const noexcept { return handles_.size(); }

 private:
  struct CachedHandle {
    CURL* handle = nullptr;
    std::string origin;
    std::uint64_t last_used = 0;
  };

  std::size_t capacity_;
  std::vector<CachedHandle> handles_;
  std::uint64_t tick_ = 0;
  std::uint64_t created_ = 0;
  std::uint64_t evicted_ = 0;
};

/// A POST to send.
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

/// What came back: a curl error, or a status, headers and a body.
struct Incoming {
  CURLcode curl = CURLE_OK;
  std::string curl_error;
  long status = 0;
  std::string body;
  std::map<std::string, std::string> headers;  // lower-case names, last block only
  bool body_truncated = false;
};

/// curl_global_init, once per process.
void init_curl_once();

/// Sends `out` on the cached handle of its origin within `timeout`, under `config`'s protocols,
/// connect timeout and Expect: 100-continue settings. Never throws for a failed exchange: the
/// failure is in the result.
Incoming perform(HandleCache& cache, const AzureConfig& config, const Outgoing& out,
                 std::chrono::milliseconds timeout);

/// The failure an exchange with `url` that did not succeed stands for (kind, retryable, status,
/// Azure's code and request id), its message starting with `what`.
AzureError::Details failure_from(const Incoming& in, const std::string& what,
                                 const std::string& url);

/// The request id Azure gave the exchange (apim-request-id, x-requestid, ...); empty if none.
std::string request_id_of(const Incoming& in);
/// The Retry-After the answer asks for (seconds, at most an hour); nullopt if none or malformed.
std::optional<std::chrono::milliseconds> retry_after(const Incoming& in);

/// Percent-encodes all but RFC 3986's unreserved characters.
std::string url_encode(std::string_view s);
/// "scheme://host:port" of `url`, lower case.
std::string origin_of(const std::string& url);

}  // namespace procpool::azure::detail
