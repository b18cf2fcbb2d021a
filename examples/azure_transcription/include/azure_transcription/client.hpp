// The HTTP side: one cached curl handle per origin, token cache, retries with backoff.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>

#include "azure_transcription/config.hpp"
#include "azure_transcription/types.hpp"

namespace procpool::azure {

/// Counters of a Transcriber, for tests and stats. Never contains secrets.
struct ClientStats {
  std::uint64_t handles_created = 0;  // curl easy handles ever created
  std::uint64_t handles_evicted = 0;  // closed because the cache was full
  std::size_t handles_cached = 0;     // open now (<= handle_cache_capacity)
  std::uint64_t requests = 0;         // transcriptions started
  std::uint64_t http_attempts = 0;    // HTTP requests sent to the speech endpoints
  std::uint64_t retries = 0;          // attempts after the first
  std::uint64_t tokens_fetched = 0;   // issueToken calls that succeeded
};

/// Transcribes audio through Azure AI Speech. Meant to live once per worker process (see
/// worker_transcriber()): it keeps a bounded cache of curl handles, so connections and TLS
/// sessions are reused across jobs, and the token of AuthMode::token.
///
/// Not thread-safe: one call at a time (a procpool worker runs one job at a time).
class Transcriber {
 public:
  /// A clock for the token cache; tests replace it to expire tokens without waiting.
  using ClockFn = std::function<std::chrono::steady_clock::time_point()>;

  /// Validates `config` (throws AzureError(configuration)).
  explicit Transcriber(AzureConfig config, ClockFn clock = {});
  ~Transcriber();
  Transcriber(const Transcriber&) = delete;
  Transcriber& operator=(const Transcriber&) = delete;

  /// Validates the request and the audio (nothing is sent if either is bad), chooses the endpoint,
  /// and runs the request with retries. `deadline`, when given (a procpool job's deadline), caps
  /// the total deadline. Throws AzureError on failure.
  TranscribeResponse transcribe(
      const TranscribeRequest& request,
      std::optional<std::chrono::steady_clock::time_point> deadline = std::nullopt);

  /// The endpoint `transcribe` would use for `request` (validating it the same way).
  Api choose_api(const TranscribeRequest& request) const;

  ClientStats stats() const noexcept;
  const AzureConfig& config() const noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Retry delay before attempt `retry` (1-based) without Retry-After: min(max, initial *
/// 2^(retry-1)) scaled by a uniform random factor in [0.5, 1.0]. `unit_random` is that factor's
/// source in [0,1].
std::chrono::milliseconds backoff_delay(unsigned retry, std::chrono::milliseconds initial,
                                        std::chrono::milliseconds max, double unit_random);

/// Whether an HTTP status is worth retrying (408, 429, 500, 502, 503, 504).
bool is_retryable_status(int status) noexcept;

}  // namespace procpool::azure
