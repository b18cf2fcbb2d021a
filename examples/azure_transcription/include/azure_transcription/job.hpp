// The typed procpool job `azure.transcribe` and its codecs.
#pragma once

#include <procpool/codec.hpp>
#include <procpool/job_registry.hpp>
#include <string_view>

#include "azure_transcription/client.hpp"
#include "azure_transcription/config.hpp"
#include "azure_transcription/types.hpp"

namespace procpool::azure {

/// pool.submit<TranscribeJob>(request) -> Future<TranscribeResponse>. A failure is a
/// handler_error whose message AzureError::from_message turns back into its details.
struct TranscribeJob {
  static constexpr std::string_view name = "azure.transcribe";
  using Request = TranscribeRequest;
  using Response = TranscribeResponse;
};

/// JSON forms (also used by the codecs and by a host service's responses).
std::string to_json(const TranscribeResponse& response);
std::string request_options_to_json(const TranscribeRequest& request);  // everything but audio

/// The worker's Transcriber, created on first use from config_from_environment() and kept for the
/// life of the worker process (one bounded handle cache per worker, not per job).
Transcriber& worker_transcriber();

/// Registers azure.transcribe on `registry`, running through worker_transcriber() with the job's
/// deadline as the outer bound.
void register_transcribe_job(JobRegistry& registry);

}  // namespace procpool::azure

/// Request: a 4-byte little-endian length, the options as JSON, then the raw audio bytes (no
/// base64: audio can be hundreds of megabytes). Response: JSON.
template <>
struct procpool::Codec<procpool::azure::TranscribeRequest> {
  static procpool::Bytes encode(const procpool::azure::TranscribeRequest& request);
  static procpool::azure::TranscribeRequest decode(std::span<const std::byte> bytes);
};

template <>
struct procpool::Codec<procpool::azure::TranscribeResponse> {
  static procpool::Bytes encode(const procpool::azure::TranscribeResponse& response);
  static procpool::azure::TranscribeResponse decode(std::span<const std::byte> bytes);
};
