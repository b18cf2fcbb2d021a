// The adapter's JSON mapping: Azure's answers (recognitions and error bodies) into the adapter's
// types, and fast transcription's `definition` out of a request.
#pragma once

#include <string>

#include "azure_transcription/types.hpp"

namespace procpool::azure::detail {

/// Azure's error body, either shape: {"error":{"code","message"}} (gateway) or
/// {"code","message",...} (service). The message falls back to the body's first 300 bytes.
struct ErrorBody {
  std::string code;
  std::string message;
};
ErrorBody parse_error_body(const std::string& body);

/// Reads a short-audio recognition (RecognitionStatus, Offset, Duration, NBest, DisplayText) into
/// `out`. Throws nlohmann::json::exception if the body is not one.
void parse_short_audio(const std::string& body, TranscribeResponse& out);
/// Reads a fast transcription (durationMilliseconds, combinedPhrases, phrases) into `out`. Throws
/// nlohmann::json::exception if the body is not one.
void parse_fast(const std::string& body, TranscribeResponse& out);

/// Fast transcription's `definition` part for `request`: locales, profanity filter mode,
/// diarization and channels.
std::string fast_definition(const TranscribeRequest& request);

}  // namespace procpool::azure::detail
