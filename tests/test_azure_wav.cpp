// The adapter's checks that run before any network call: WAV walking, endpoint choice, request
// validation, configuration, codecs and backoff arithmetic.
#include <azure_transcription/client.hpp>
#include <azure_transcription/config.hpp>
#include <azure_transcription/job.hpp>
#include <azure_transcription/wav.hpp>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "azure_catch.hpp"
#include "azure_test_helpers.hpp"
#include "catch.hpp"

using namespace procpool::azure;
using procpool::azure_test::as_bytes;
using procpool::azure_test::Has;
using procpool::azure_test::tone_wav;

namespace {

std::string wav_error(const std::vector<std::byte>& file, WavLimits limits = {}) {
  try {
    check_wav(parse_wav(file), limits);
  } catch (const AzureError& e) {
    CHECK(e.kind() == ErrorKind::invalid_audio);
    return e.details().message;
  }
  return "";
}

void put32(std::vector<std::byte>& f, std::size_t at, std::uint32_t v) {
  for (int i = 0; i < 4; ++i)
    f[at + i] = static_cast<std::byte>((v >> (8 * i)) & 0xff);
}

void put16(std::vector<std::byte>& f, std::size_t at, std::uint16_t v) {
  f[at] = static_cast<std::byte>(v & 0xff);
  f[at + 1] = static_cast<std::byte>(v >> 8);
}

// A config that points at a port where nothing listens: any network call would fail.
AzureConfig offline_config() {
  AzureConfig c;
  c.key = "offline-secret-key-42";
  c.endpoint = "http://127.0.0.1:9";
  c.allow_http = true;
  c.max_retries = 0;
  return c;
}

}  // namespace

TEST_CASE("a 16 kHz mono 16-bit WAV is read chunk by chunk", "[azure][wav]") {
  auto file = tone_wav(2.5);
  WavInfo info = parse_wav(file);
  CHECK(info.pcm);
  CHECK(info.channels == 1);
  CHECK(info.sample_rate == 16000);
  CHECK(info.bits_per_sample == 16);
  CHECK(info.byte_rate == 32000);
  CHECK(info.block_align == 2);
  CHECK(info.data_offset == 44);
  CHECK(info.data_bytes == 80000);
  CHECK(std::abs(info.duration_seconds - 2.5) < 1e-9);
  CHECK(is_short_audio_format(info));
  CHECK_NOTHROW(check_wav(info, {.require_short_audio_format = true, .max_seconds = 60}));
}

TEST_CASE("a LIST chunk before fmt is walked over, not assumed away", "[azure][wav]") {
  auto file = tone_wav(1.0, 1, 16000, 1, 3000, /*with_list_chunk=*/true);
  WavInfo info = parse_wav(file);
  CHECK(info.data_offset > 44);
  CHECK(info.data_bytes == 32000);
  CHECK(std::abs(info.duration_seconds - 1.0) < 1e-9);
}

TEST_CASE("broken WAV files are refused with a message naming the problem", "[azure][wav]") {
  auto good = tone_wav(1.0);
  SECTION("too short") {
    CHECK_THAT(wav_error(as_bytes("RIFF")), Has("too short"));
  }
  SECTION("not RIFF") {
    auto f = good;
    std::memcpy(f.data(), "RIFX", 4);
    CHECK_THAT(wav_error(f), Has("RIFF"));
  }
  SECTION("not WAVE") {
    auto f = good;
    std::memcpy(f.data() + 8, "AVI ", 4);
    CHECK_THAT(wav_error(f), Has("WAVE"));
  }
  SECTION("truncated data") {
    auto f = good;
    f.resize(f.size() - 100);
    CHECK_THAT(wav_error(f), Has("truncated"));
  }
  SECTION("data before fmt") {
    auto f = good;
    std::memcpy(f.data() + 12, "data", 4);
    CHECK_THAT(wav_error(f), Has("before any \"fmt \""));
  }
  SECTION("no data chunk") {
    auto f = good;
    f.resize(36);
    CHECK_THAT(wav_error(f), Has("no \"data\" chunk"));
  }
  SECTION("byte rate inconsistent") {
    auto f = good;
    put32(f, 28, 12345);
    CHECK_THAT(wav_error(f), Has("byte rate 12345"));
  }
  SECTION("block align inconsistent") {
    auto f = good;
    put16(f, 32, 4);
    CHECK_THAT(wav_error(f), Has("block align 4"));
  }
  SECTION("a chunk claiming more bytes than the file has") {
    auto f = good;
    put32(f, 16, 1'000'000);
    CHECK_THAT(wav_error(f), Has("claims 1000000 bytes"));
  }
  SECTION("empty data") {
    auto f = tone_wav(0.0);
    CHECK_THAT(wav_error(f), Has("no audio"));
  }
}

TEST_CASE("short audio limits: rate, channels, bits, 60 s", "[azure][wav]") {
  WavLimits short_audio{.require_short_audio_format = true, .max_seconds = 60};
  CHECK_THAT(wav_error(tone_wav(1.0, 1, 8000), short_audio), Has("sample rate 8000"));
  CHECK_THAT(wav_error(tone_wav(1.0, 1, 16000, 2), short_audio), Has("2 channels"));
  CHECK_THAT(wav_error(tone_wav(61.0), short_audio), Has("over the limit of 60"));
  auto eight_bit = tone_wav(1.0);
  put16(eight_bit, 34, 8);      // bits
  put16(eight_bit, 32, 1);      // block align
  put32(eight_bit, 28, 16000);  // byte rate
  CHECK_THAT(wav_error(eight_bit, short_audio), Has("8 bits"));
  auto alaw = tone_wav(1.0);
  put16(alaw, 20, 6);
  CHECK_THAT(wav_error(alaw, short_audio), Has("not PCM"));
  // Fast transcription takes A-law and stereo.
  CHECK(wav_error(alaw, {.max_seconds = 7200}).empty());
  CHECK(wav_error(tone_wav(1.0, 1, 44100, 2), {.max_seconds = 7200}).empty());
}

TEST_CASE("WAVE_FORMAT_EXTENSIBLE with the PCM subformat is PCM", "[azure][wav]") {
  // Rebuild the fmt chunk as 40 bytes of extensible format.
  auto plain = tone_wav(1.0);
  std::vector<std::byte> f(plain.begin(), plain.begin() + 12);
  auto append = [&](const void* p, std::size_t n) {
    const auto* b = static_cast<const std::byte*>(p);
    f.insert(f.end(), b, b + n);
  };
  std::uint32_t size40 = 40;
  append("fmt ", 4);
  append(&size40, 4);
  std::uint16_t tag = 0xFFFE, channels = 1, align = 2, bits = 16, cb = 22, valid = 16;
  std::uint32_t rate = 16000, byte_rate = 32000, mask = 4;
  append(&tag, 2);
  append(&channels, 2);
  append(&rate, 4);
  append(&byte_rate, 4);
  append(&align, 2);
  append(&bits, 2);
  append(&cb, 2);
  append(&valid, 2);
  append(&mask, 4);
  const unsigned char pcm_guid[16] = {0x01, 0, 0, 0,    0, 0,    0x10, 0,
                                      0x80, 0, 0, 0xaa, 0, 0x38, 0x9b, 0x71};
  append(pcm_guid, 16);
  f.insert(f.end(), plain.begin() + 36, plain.end());
  put32(f, 4, static_cast<std::uint32_t>(f.size() - 8));
  WavInfo info = parse_wav(f);
  CHECK(info.format_tag == 0xFFFE);
  CHECK(info.pcm);
  CHECK(is_short_audio_format(info));
  f[12 + 8 + 24] = std::byte{0x03};  // IEEE float subformat
  CHECK_FALSE(parse_wav(f).pcm);
}

TEST_CASE("a streaming data size of 0xFFFFFFFF means to the end of the file", "[azure][wav]") {
  auto f = tone_wav(1.0);
  put32(f, 40, 0xFFFFFFFFu);
  CHECK(parse_wav(f).data_bytes == 32000);
}

TEST_CASE("the endpoint is chosen by duration and format unless the caller says",
          "[azure][choice]") {
  Transcriber t(offline_config());
  TranscribeRequest r;
  r.audio = tone_wav(60.0);
  CHECK(t.choose_api(r) == Api::short_audio);
  r.audio = tone_wav(60.5);
  CHECK(t.choose_api(r) == Api::fast);
  r.audio = tone_wav(5.0, 1, 44100, 2);
  CHECK(t.choose_api(r) == Api::fast);
  r.audio = tone_wav(5.0);
  r.diarization = true;
  CHECK(t.choose_api(r) == Api::fast);
  r.diarization = false;
  r.locales = {};
  CHECK(t.choose_api(r) == Api::fast);  // language detection
  r.locales = {"en-US"};
  r.api = Api::fast;
  CHECK(t.choose_api(r) == Api::fast);
  r.content_type = "audio/ogg; codecs=opus";
  r.audio = as_bytes("OggS and some opus pages");
  r.api = Api::automatic;
  CHECK(t.choose_api(r) == Api::fast);
  r.api = Api::short_audio;
  CHECK(t.choose_api(r) == Api::short_audio);
}

TEST_CASE("bad requests fail before any network call", "[azure][choice]") {
  Transcriber t(offline_config());
  auto expect_error = [&](const TranscribeRequest& r, ErrorKind kind, const std::string& text) {
    try {
      t.transcribe(r);
      FAIL("no error");
    } catch (const AzureError& e) {
      CHECK(e.kind() == kind);
      CHECK_THAT(e.details().message, Has(text));
      CHECK(e.details().attempts == 0);
    }
  };
  TranscribeRequest r;
  r.audio = tone_wav(61.0);
  r.api = Api::short_audio;
  expect_error(r, ErrorKind::invalid_audio, "over the limit of 60");
  r = {};
  r.audio = tone_wav(1.0, 1, 8000);
  r.api = Api::short_audio;
  expect_error(r, ErrorKind::invalid_audio, "sample rate 8000");
  r = {};
  expect_error(r, ErrorKind::invalid_request, "empty");
  r.audio = tone_wav(1.0);
  r.content_type = "text/plain";
  expect_error(r, ErrorKind::invalid_request, "unsupported content type");
  r.content_type = "audio/wav";
  r.locales = {"en US; drop"};
  expect_error(r, ErrorKind::invalid_request, "not a locale");
  r.locales = {"en-US"};
  r.diarization = true;
  r.max_speakers = 40;
  expect_error(r, ErrorKind::invalid_request, "max_speakers");
  r.max_speakers = 2;
  r.channels = {0, 1};
  expect_error(r, ErrorKind::invalid_request, "diarization");
  r = {};
  r.audio = as_bytes("not an ogg");
  r.content_type = "audio/ogg";
  expect_error(r, ErrorKind::invalid_audio, "OggS");
  r = {};
  r.audio = as_bytes("RIFF....WAVEjunk");
  expect_error(r, ErrorKind::invalid_audio, "invalid WAV");
  CHECK(t.stats().http_attempts == 0);
  CHECK(t.stats().handles_created == 0);
}

TEST_CASE("configuration from the environment", "[azure][config]") {
  SECTION("region") {
    AzureConfig c =
        config_from_env({{"AZURE_SPEECH_KEY", "k"}, {"AZURE_SPEECH_REGION", "westeurope"}});
    CHECK_NOTHROW(c.validate());
    CHECK(c.resolved_short_audio_url() ==
          "https://westeurope.stt.speech.microsoft.com/speech/recognition/conversation/"
          "cognitiveservices/v1");
    CHECK(c.resolved_fast_url() ==
          "https://westeurope.api.cognitive.microsoft.com/speechtotext/transcriptions:transcribe");
    CHECK(c.resolved_token_url() ==
          "https://westeurope.api.cognitive.microsoft.com/sts/v1.0/issueToken");
  }
  SECTION("custom domain") {
    AzureConfig c =
        config_from_env({{"AZURE_SPEECH_KEY", "k"},
                         {"AZURE_SPEECH_ENDPOINT", "https://mine.cognitiveservices.azure.com/"},
                         {"AZURE_SPEECH_AUTH", "token"},
                         {"AZURE_SPEECH_MAX_RETRIES", "5"}});
    CHECK_NOTHROW(c.validate());
    CHECK(c.auth == AuthMode::token);
    CHECK(c.max_retries == 5);
    CHECK(c.resolved_short_audio_url() ==
          "https://mine.cognitiveservices.azure.com/stt/speech/recognition/interactive/"
          "cognitiveservices/v1");
    CHECK(c.resolved_token_url() == "https://mine.cognitiveservices.azure.com/sts/v1.0/issueToken");
  }
  SECTION("errors name the variable, never the key") {
    const std::string key = "super-secret-key-value";
    auto message_of = [](const AzureConfig& c) -> std::string {
      try {
        c.validate();
      } catch (const AzureError& e) {
        CHECK(e.kind() == ErrorKind::configuration);
        return e.what();
      }
      return "";
    };
    CHECK_THAT(message_of(config_from_env({{"AZURE_SPEECH_REGION", "westeurope"}})),
               Has("AZURE_SPEECH_KEY"));
    std::string m = message_of(config_from_env({{"AZURE_SPEECH_KEY", key}}));
    CHECK_THAT(m, Has("AZURE_SPEECH_REGION"));
    CHECK(m.find(key) == std::string::npos);
    m = message_of(
        config_from_env({{"AZURE_SPEECH_KEY", key}, {"AZURE_SPEECH_ENDPOINT", "http://x"}}));
    CHECK_THAT(m, Has("AZURE_SPEECH_ALLOW_HTTP"));
    CHECK(m.find(key) == std::string::npos);
    CHECK_THROWS_AS(config_from_env({{"AZURE_SPEECH_MAX_RETRIES", "three"}}), AzureError);
    CHECK_THROWS_AS(config_from_env({{"AZURE_SPEECH_AUTH", "password"}}), AzureError);
  }
}

TEST_CASE("request and response codecs round-trip", "[azure][codec]") {
  TranscribeRequest r;
  r.audio = tone_wav(0.5);
  r.content_type = "audio/wav; codecs=audio/pcm";
  r.locales = {"de-DE", "fr-FR"};
  r.api = Api::fast;
  r.format = OutputFormat::detailed;
  r.profanity = Profanity::tags;
  r.diarization = true;
  r.max_speakers = 3;
  r.channels = {0};
  r.total_timeout = std::chrono::milliseconds(1234);
  auto bytes = procpool::Codec<TranscribeRequest>::encode(r);
  TranscribeRequest back = procpool::Codec<TranscribeRequest>::decode(bytes);
  CHECK(back.audio == r.audio);
  CHECK(back.content_type == r.content_type);
  CHECK(back.locales == r.locales);
  CHECK(back.api == Api::fast);
  CHECK(back.format == OutputFormat::detailed);
  CHECK(back.profanity == Profanity::tags);
  CHECK(back.diarization);
  CHECK(back.max_speakers == 3);
  CHECK(back.channels == std::vector<int>{0});
  CHECK(back.total_timeout.count() == 1234);
  CHECK_THROWS_AS(procpool::Codec<TranscribeRequest>::decode(std::span(bytes).first(3)),
                  procpool::CodecError);

  TranscribeResponse s;
  s.api = Api::fast;
  s.status = "Success";
  s.display_text = "Good afternoon.";
  s.offset_ticks = 9'600'000;
  s.phrases.push_back({"Good afternoon.",
                       960,
                       640,
                       "en-US",
                       0.93,
                       1,
                       std::nullopt,
                       {{"Good", 960, 240}, {"afternoon.", 1200, 400}}});
  s.nbest.push_back({0.9, "good afternoon", "good afternoon", "good afternoon", "Good afternoon."});
  s.request_id = "abc";
  s.attempts = 2;
  auto sb = procpool::Codec<TranscribeResponse>::encode(s);
  TranscribeResponse sback = procpool::Codec<TranscribeResponse>::decode(sb);
  CHECK(sback.display_text == s.display_text);
  REQUIRE(sback.phrases.size() == 1);
  CHECK(sback.phrases[0].speaker == 1);
  CHECK_FALSE(sback.phrases[0].channel.has_value());
  CHECK(sback.phrases[0].words.size() == 2);
  CHECK(sback.nbest.size() == 1);
  CHECK(sback.request_id == "abc");
  CHECK(sback.attempts == 2);
}

TEST_CASE("errors survive the trip through a job's message", "[azure][codec]") {
  AzureError::Details d = AzureError::make(ErrorKind::throttled, "HTTP 429 TooManyRequests");
  d.http_status = 429;
  d.code = "TooManyRequests";
  d.attempts = 4;
  AzureError e(d);
  auto back = AzureError::from_message(e.what());
  REQUIRE(back);
  CHECK(back->kind == ErrorKind::throttled);
  CHECK(back->http_status == 429);
  CHECK(back->code == "TooManyRequests");
  CHECK(back->attempts == 4);
  CHECK_FALSE(AzureError::from_message("some other failure"));
}

TEST_CASE("backoff doubles, is capped, and is jittered into [d/2, d]", "[azure][retry]") {
  using std::chrono::milliseconds;
  CHECK(backoff_delay(1, milliseconds(800), milliseconds(120'000), 1.0) == milliseconds(800));
  CHECK(backoff_delay(1, milliseconds(800), milliseconds(120'000), 0.0) == milliseconds(400));
  CHECK(backoff_delay(3, milliseconds(800), milliseconds(120'000), 1.0) == milliseconds(3200));
  CHECK(backoff_delay(20, milliseconds(800), milliseconds(120'000), 1.0) == milliseconds(120'000));
  for (int status : {408, 429, 500, 502, 503, 504})
    CHECK(is_retryable_status(status));
  for (int status : {400, 401, 403, 404, 413, 415, 422, 501})
    CHECK_FALSE(is_retryable_status(status));
}
