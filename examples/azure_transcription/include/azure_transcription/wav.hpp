// WAV validation: walks the RIFF chunks of a file before anything is sent to Azure.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace procpool::azure {

/// What a WAV file's `fmt ` and `data` chunks say.
struct WavInfo {
  std::uint16_t format_tag = 0;  // 1 = PCM, 6 = A-law, 7 = mu-law, 0xFFFE = extensible
  bool pcm = false;              // PCM, directly or through WAVE_FORMAT_EXTENSIBLE
  std::uint16_t channels = 0;
  std::uint32_t sample_rate = 0;
  std::uint32_t byte_rate = 0;
  std::uint16_t block_align = 0;
  std::uint16_t bits_per_sample = 0;
  std::size_t data_offset = 0;  // where the samples start in the file
  std::uint64_t data_bytes = 0;
  double duration_seconds = 0;  // data_bytes / byte_rate
};

/// Parses the RIFF structure: "RIFF", size, "WAVE", then chunks (id, u32 size, padded to even),
/// never assuming a 44-byte header. Requires a `fmt ` chunk (at least 16 bytes, before `data`)
/// and a `data` chunk that the file really holds (a streaming size of 0xFFFFFFFF means "to the end
/// of the file"), and checks byte rate and block align against rate, channels and bits. Throws
/// AzureError(invalid_audio) naming what is wrong.
WavInfo parse_wav(std::span<const std::byte> file);

/// What the endpoint accepts.
struct WavLimits {
  bool require_short_audio_format = false;  // 16 kHz, mono, 16-bit PCM
  double max_seconds = 60;
  std::uint32_t min_rate = 8000;
  std::uint32_t max_rate = 48000;
  std::uint16_t max_channels = 2;
};

/// Checks `info` against `limits`; throws AzureError(invalid_audio) naming the first problem.
void check_wav(const WavInfo& info, const WavLimits& limits);

/// True when `info` is 16 kHz mono 16-bit PCM, the format short audio wants.
bool is_short_audio_format(const WavInfo& info) noexcept;

/// Builds a PCM WAV file (for tests, examples and the simulated load): a RIFF header, an optional
/// LIST chunk, and `samples`.
std::string make_wav(std::span<const std::int16_t> samples, std::uint32_t sample_rate = 16000,
                     std::uint16_t channels = 1, bool with_list_chunk = false);

}  // namespace procpool::azure
