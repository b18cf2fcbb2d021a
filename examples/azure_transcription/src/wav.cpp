#include "azure_transcription/wav.hpp"

#include <cstring>
#include <string>

#include "azure_transcription/types.hpp"

namespace procpool::azure {

namespace {

[[noreturn]] void invalid(std::string message) {
  throw AzureError(AzureError::make(ErrorKind::invalid_audio, "invalid WAV: " + message));
}

std::uint32_t u32(std::span<const std::byte> b, std::size_t at) {
  return static_cast<std::uint32_t>(b[at]) | static_cast<std::uint32_t>(b[at + 1]) << 8 |
         static_cast<std::uint32_t>(b[at + 2]) << 16 | static_cast<std::uint32_t>(b[at + 3]) << 24;
}

std::uint16_t u16(std::span<const std::byte> b, std::size_t at) {
  return static_cast<std::uint16_t>(static_cast<unsigned>(b[at]) | static_cast<unsigned>(b[at + 1])
                                                                       << 8);
}

bool id_is(std::span<const std::byte> b, std::size_t at, const char* id) {
  return std::memcmp(b.data() + at, id, 4) == 0;
}

std::string printable_id(std::span<const std::byte> b, std::size_t at) {
  std::string id;
  for (std::size_t i = 0; i < 4; ++i) {
    auto c = static_cast<unsigned char>(b[at + i]);
    id += (c >= 0x20 && c < 0x7f) ? static_cast<char>(c) : '?';
  }
  return id;
}

// KSDATAFORMAT_SUBTYPE_PCM: 00000001-0000-0010-8000-00aa00389b71, as stored.
constexpr unsigned char pcm_subformat[16] = {0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00,
                                             0x80, 0x00, 0x00, 0xaa, 0x00, 0x38, 0x9b, 0x71};

}  // namespace

WavInfo parse_wav(std::span<const std::byte> file) {
  if (file.size() < 12) invalid("the file is " + std::to_string(file.size()) + " bytes, too short");
  if (!id_is(file, 0, "RIFF")) invalid("it does not start with \"RIFF\"");
  if (!id_is(file, 8, "WAVE")) invalid("the RIFF form type is not \"WAVE\"");

  WavInfo info;
  bool have_fmt = false;
  bool have_data = false;
  std::size_t pos = 12;
  // Bounded: each iteration advances pos by at least 8 bytes.
  while (pos + 8 <= file.size() && !have_data) {
    std::string id = printable_id(file, pos);
    std::uint64_t size = u32(file, pos + 4);
    std::size_t body = pos + 8;
    std::uint64_t remaining = file.size() - body;
    if (id == "data") {
      if (!have_fmt) invalid("the \"data\" chunk comes before any \"fmt \" chunk");
      if (size == 0xFFFFFFFFu) size = remaining;  // streaming writers: "to the end of the file"
      if (size > remaining) {
        invalid("the \"data\" chunk claims " + std::to_string(size) + " bytes but only " +
                std::to_string(remaining) + " follow (truncated file?)");
      }
      info.data_offset = body;
      info.data_bytes = size;
      have_data = true;
      break;
    }
    if (size > remaining) {
      invalid("the \"" + id + "\" chunk at byte " + std::to_string(pos) + " claims " +
              std::to_string(size) + " bytes but only " + std::to_string(remaining) + " follow");
    }
    if (id == "fmt ") {
      if (have_fmt) invalid("more than one \"fmt \" chunk");
      if (size < 16) invalid("the \"fmt \" chunk is " + std::to_string(size) + " bytes, need 16");
      info.format_tag = u16(file, body);
      info.channels = u16(file, body + 2);
      info.sample_rate = u32(file, body + 4);
      info.byte_rate = u32(file, body + 8);
      info.block_align = u16(file, body + 12);
      info.bits_per_sample = u16(file, body + 14);
      info.pcm = info.format_tag == 1;
      if (info.format_tag == 0xFFFE) {
        if (size < 40) invalid("WAVE_FORMAT_EXTENSIBLE \"fmt \" chunk shorter than 40 bytes");
        info.pcm = std::memcmp(file.data() + body + 24, pcm_subformat, 16) == 0;
      }
      have_fmt = true;
    }
    pos = body + size + (size & 1);  // chunks are padded to an even length
  }
  if (!have_fmt) invalid("no \"fmt \" chunk");
  if (!have_data) invalid("no \"data\" chunk");
  if (info.channels == 0) invalid("0 channels");
  if (info.sample_rate == 0) invalid("sample rate 0");
  if (info.bits_per_sample == 0 || info.bits_per_sample % 8 != 0) {
    invalid(std::to_string(info.bits_per_sample) + " bits per sample (need a multiple of 8)");
  }
  std::uint32_t frame = info.channels * (info.bits_per_sample / 8u);
  if (info.block_align != frame) {
    invalid("block align " + std::to_string(info.block_align) +
            " != channels x bits/8 = " + std::to_string(frame));
  }
  if (info.byte_rate != static_cast<std::uint64_t>(info.sample_rate) * frame) {
    invalid("byte rate " + std::to_string(info.byte_rate) + " != rate x channels x bits/8 = " +
            std::to_string(static_cast<std::uint64_t>(info.sample_rate) * frame));
  }
  info.duration_seconds = static_cast<double>(info.data_bytes) / info.byte_rate;
  return info;
}

bool is_short_audio_format(const WavInfo& info) noexcept {
  return info.pcm && info.sample_rate == 16000 && info.channels == 1 && info.bits_per_sample == 16;
}

void check_wav(const WavInfo& info, const WavLimits& limits) {
  if (info.data_bytes == 0) invalid("the \"data\" chunk is empty (no audio)");
  if (limits.require_short_audio_format) {
    if (!info.pcm) {
      invalid("format tag " + std::to_string(info.format_tag) +
              " is not PCM (short audio needs 16 kHz mono 16-bit PCM)");
    }
    if (info.sample_rate != 16000) {
      invalid("sample rate " + std::to_string(info.sample_rate) + " Hz (short audio needs 16000)");
    }
    if (info.channels != 1) {
      invalid(std::to_string(info.channels) + " channels (short audio needs mono)");
    }
    if (info.bits_per_sample != 16) {
      invalid(std::to_string(info.bits_per_sample) + " bits per sample (short audio needs 16)");
    }
  } else {
    bool law = info.format_tag == 6 || info.format_tag == 7;
    if (!info.pcm && !law) {
      invalid("format tag " + std::to_string(info.format_tag) + " is neither PCM nor A-law/mu-law");
    }
    if (info.sample_rate < limits.min_rate || info.sample_rate > limits.max_rate) {
      invalid("sample rate " + std::to_string(info.sample_rate) + " Hz outside " +
              std::to_string(limits.min_rate) + ".." + std::to_string(limits.max_rate));
    }
    if (info.channels > limits.max_channels) {
      invalid(std::to_string(info.channels) + " channels (at most " +
              std::to_string(limits.max_channels) + ")");
    }
  }
  if (info.duration_seconds > limits.max_seconds) {
    invalid("the audio lasts " + std::to_string(info.duration_seconds) + " s, over the limit of " +
            std::to_string(limits.max_seconds) + " s");
  }
}

std::string make_wav(std::span<const std::int16_t> samples, std::uint32_t sample_rate,
                     std::uint16_t channels, bool with_list_chunk) {
  std::string out;
  auto put32 = [&](std::uint32_t v) {
    for (int i = 0; i < 4; ++i)
      out += static_cast<char>((v >> (8 * i)) & 0xff);
  };
  auto put16 = [&](std::uint16_t v) {
    out += static_cast<char>(v & 0xff);
    out += static_cast<char>(v >> 8);
  };
  const std::string list("INFOISFT\x05\x00\x00\x00test\x00\x00", 18);  // odd item, padded
  std::uint32_t data_bytes = static_cast<std::uint32_t>(samples.size() * 2);
  std::uint32_t list_bytes = with_list_chunk ? static_cast<std::uint32_t>(8 + list.size()) : 0;
  out += "RIFF";
  put32(4 + (8 + 16) + list_bytes + 8 + data_bytes);
  out += "WAVE";
  if (with_list_chunk) {
    out += "LIST";
    put32(static_cast<std::uint32_t>(list.size()));
    out += list;
  }
  out += "fmt ";
  put32(16);
  put16(1);
  put16(channels);
  put32(sample_rate);
  put32(sample_rate * channels * 2);
  put16(static_cast<std::uint16_t>(channels * 2));
  put16(16);
  out += "data";
  put32(data_bytes);
  for (std::int16_t s : samples)
    put16(static_cast<std::uint16_t>(s));
  return out;
}

}  // namespace procpool::azure
