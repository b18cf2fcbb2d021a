// The azure.transcribe job's request, response and errors.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace procpool::azure {

/// Which Azure endpoint runs the transcription.
enum class Api {
  /// Short audio for a WAV of at most 60 s in the short-audio format (16 kHz, mono, 16-bit PCM);
  /// fast transcription for everything else.
  automatic,
  /// POST .../speech/recognition/conversation/cognitiveservices/v1 (synchronous, <= 60 s).
  short_audio,
  /// POST .../speechtotext/transcriptions:transcribe (multipart, long files).
  fast,
};

/// Short audio's `format` query parameter (fast transcription always returns phrases and words).
enum class OutputFormat { simple, detailed };

/// Profanity handling. Short audio knows masked/removed/raw; fast transcription knows
/// None/Masked/Removed/Tags (raw is sent as None; tags is refused for short audio).
enum class Profanity { masked, removed, raw, tags };

std::string_view to_string(Api api) noexcept;
std::string_view to_string(OutputFormat format) noexcept;
std::string_view to_string(Profanity profanity) noexcept;
std::optional<Api> parse_api(std::string_view text) noexcept;
std::optional<OutputFormat> parse_output_format(std::string_view text) noexcept;
std::optional<Profanity> parse_profanity(std::string_view text) noexcept;

/// What to transcribe and how.
struct TranscribeRequest {
  /// The audio file's bytes (a whole WAV file, an OGG/OPUS stream, an MP3, ...).
  std::vector<std::byte> audio;
  /// Its media type: "audio/wav" (parameters allowed), "audio/ogg; codecs=opus", or for fast
  /// transcription also audio/mpeg, audio/flac, audio/webm, ... (see docs/azure.md).
  std::string content_type = "audio/wav";
  /// Locales. Short audio uses the first (required there); fast transcription sends them all, and
  /// an empty list asks it for language detection.
  std::vector<std::string> locales = {"en-US"};
  Api api = Api::automatic;
  OutputFormat format = OutputFormat::simple;
  Profanity profanity = Profanity::masked;
  /// Fast transcription only.
  bool diarization = false;
  int max_speakers = 2;
  std::vector<int> channels;
  /// Overrides of the configured deadlines for this request; 0 = the configured value.
  std::chrono::milliseconds attempt_timeout{0};
  std::chrono::milliseconds total_timeout{0};
};

/// One alternative of a detailed short-audio result.
struct NBestEntry {
  double confidence = 0;
  std::string lexical;
  std::string itn;
  std::string masked_itn;
  std::string display;
};

/// A word of a fast-transcription phrase; offsets in milliseconds.
struct Word {
  std::string text;
  std::int64_t offset_ms = 0;
  std::int64_t duration_ms = 0;
};

/// A phrase of a fast-transcription result.
struct Phrase {
  std::string text;
  std::int64_t offset_ms = 0;
  std::int64_t duration_ms = 0;
  std::string locale;
  double confidence = 0;
  std::optional<int> speaker;
  std::optional<int> channel;
  std::vector<Word> words;
};

/// The transcript. `status` is short audio's RecognitionStatus ("Success", "NoMatch",
/// "InitialSilenceTimeout", "BabbleTimeout"); fast transcription reports "Success".
struct TranscribeResponse {
  Api api = Api::short_audio;
  std::string status;
  std::string display_text;
  /// Where the speech starts and how long it lasts, in 100-ns ticks (short audio's unit; fast
  /// transcription's milliseconds are converted).
  std::int64_t offset_ticks = 0;
  std::int64_t duration_ticks = 0;
  /// Fast transcription: the whole file's duration.
  std::int64_t audio_duration_ms = 0;
  std::vector<NBestEntry> nbest;
  std::vector<Phrase> phrases;
  /// Azure's request id from the response headers (apim-request-id, X-RequestId, ...), if any.
  std::string request_id;
  int http_status = 0;
  /// HTTP attempts made (1 when the first one succeeded).
  unsigned attempts = 0;
  /// Wall time of the whole call and of the successful attempt.
  double total_ms = 0;
  double last_attempt_ms = 0;
  /// Time spent waiting between attempts.
  double backoff_ms = 0;
};

/// What went wrong, in a form a service can map to an HTTP status.
enum class ErrorKind {
  invalid_audio,    // the audio failed validation; nothing was sent
  invalid_request,  // bad options (unknown content type, bad locale list, ...); nothing sent
  configuration,    // no key, no region or endpoint, ...
  authentication,   // 401/403
  bad_request,      // 400, 413, 415, 422 and other 4xx that are not retried
  throttled,        // 429 after the last retry
  service_error,    // 5xx, or RecognitionStatus Error, after the last retry
  timeout,          // 408 after the last retry, or a deadline passed
  connection,       // could not connect / connection dropped, after the last retry
  bad_response,     // a 2xx whose body could not be understood
};
std::string_view to_string(ErrorKind kind) noexcept;
std::optional<ErrorKind> parse_error_kind(std::string_view text) noexcept;

/// Thrown by the adapter. what() is a one-line JSON object so that the host can recover the
/// structure from a procpool JobError's message with AzureError::from_message. Never contains
/// the subscription key or a token.
class AzureError : public std::runtime_error {
 public:
  struct Details {
    ErrorKind kind = ErrorKind::service_error;
    std::string message;
    int http_status = 0;     // 0 when no HTTP response was received
    std::string code;        // Azure's error code ("TooManyRequests", "401", ...), if any
    std::string request_id;  // Azure's request id, if any
    unsigned attempts = 0;   // HTTP attempts made
    bool retryable = false;  // whether the last failure was of a retryable sort
  };

  explicit AzureError(Details details);
  /// Details with just a kind and a message.
  static Details make(ErrorKind kind, std::string message) {
    Details d;
    d.kind = kind;
    d.message = std::move(message);
    return d;
  }
  const Details& details() const noexcept { return details_; }
  ErrorKind kind() const noexcept { return details_.kind; }

  /// Parses a message produced by what(), e.g. procpool::JobError::message of a failed
  /// azure.transcribe job. nullopt when it is not one.
  static std::optional<Details> from_message(std::string_view message);

 private:
  Details details_;
};

}  // namespace procpool::azure
