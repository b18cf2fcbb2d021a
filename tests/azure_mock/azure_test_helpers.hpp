// Helpers shared by the Azure tests: test audio and an adapter configuration aimed at the mock.
#pragma once

#include <azure_transcription/config.hpp>
#include <azure_transcription/wav.hpp>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "mock_server.hpp"

namespace procpool::azure_test {

/// A WAV of `seconds` of a tone whose pitch depends on `seed` (so different seeds give different
/// transcripts). amplitude 0 gives digital silence.
inline std::vector<std::byte> tone_wav(double seconds, int seed = 1, std::uint32_t rate = 16000,
                                       std::uint16_t channels = 1, int amplitude = 3000,
                                       bool with_list_chunk = false) {
  auto frames = static_cast<std::size_t>(seconds * rate);
  std::vector<std::int16_t> samples(frames * channels);
  for (std::size_t i = 0; i < frames; ++i) {
    double v = amplitude * std::sin(static_cast<double>(i) * (0.01 + 0.003 * seed));
    for (std::uint16_t c = 0; c < channels; ++c)
      samples[i * channels + c] = static_cast<std::int16_t>(v);
  }
  std::string file = azure::make_wav(samples, rate, channels, with_list_chunk);
  const auto* p = reinterpret_cast<const std::byte*>(file.data());
  return std::vector<std::byte>(p, p + file.size());
}

inline std::vector<std::byte> as_bytes(const std::string& s) {
  const auto* p = reinterpret_cast<const std::byte*>(s.data());
  return std::vector<std::byte>(p, p + s.size());
}

/// Points the adapter at the mock through the environment, which pool workers inherit: fast
/// backoff for tests, and at most `max_retries` retries when given.
inline void point_environment_at(const azure_mock::MockServer& mock,
                                 std::optional<int> max_retries = std::nullopt) {
  ::setenv("AZURE_SPEECH_KEY", mock.options().key.c_str(), 1);
  ::setenv("AZURE_SPEECH_ENDPOINT", mock.base_url().c_str(), 1);
  ::setenv("AZURE_SPEECH_SHORT_AUDIO_URL",
           (mock.base_url() + "/speech/recognition/conversation/cognitiveservices/v1").c_str(), 1);
  ::setenv("AZURE_SPEECH_ALLOW_HTTP", "1", 1);
  ::setenv("AZURE_SPEECH_BACKOFF_MS", "5", 1);
  ::setenv("AZURE_SPEECH_BACKOFF_MAX_MS", "50", 1);
  if (max_retries) {
    ::setenv("AZURE_SPEECH_MAX_RETRIES", std::to_string(*max_retries).c_str(), 1);
  } else {
    ::unsetenv("AZURE_SPEECH_MAX_RETRIES");
  }
  ::unsetenv("AZURE_SPEECH_REGION");
  ::unsetenv("AZURE_SPEECH_AUTH");
}

/// The adapter pointed at the mock: regional short-audio path, fast backoff for tests.
inline azure::AzureConfig mock_config(const azure_mock::MockServer& mock) {
  azure::AzureConfig c;
  c.key = mock.options().key;
  c.endpoint = mock.base_url();
  c.short_audio_url = mock.base_url() + "/speech/recognition/conversation/cognitiveservices/v1";
  c.allow_http = true;
  c.backoff_initial = std::chrono::milliseconds(5);
  c.backoff_max = std::chrono::milliseconds(100);
  c.attempt_timeout = std::chrono::milliseconds(10'000);
  c.total_timeout = std::chrono::milliseconds(30'000);
  c.connect_timeout = std::chrono::milliseconds(2'000);
  return c;
}

}  // namespace procpool::azure_test
