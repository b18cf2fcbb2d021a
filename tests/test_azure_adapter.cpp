// The adapter against the loopback mock: both endpoints, both auth styles, every scripted fault,
// the retry and no-retry rules, token refresh, secrets kept out of errors, the handle cache.
#include <azure_transcription/client.hpp>
#include <chrono>
#include <string>
#include <vector>

#include "azure_catch.hpp"
#include "azure_test_helpers.hpp"
#include "catch.hpp"
#include "mock_server.hpp"

using namespace procpool::azure;
using procpool::azure_mock::Endpoint;
using procpool::azure_mock::Fault;
using procpool::azure_mock::MockServer;
using procpool::azure_test::as_bytes;
using procpool::azure_test::Has;
using procpool::azure_test::mock_config;
using procpool::azure_test::tone_wav;
using std::chrono::milliseconds;
using SteadyClock = std::chrono::steady_clock;

namespace {

TranscribeRequest wav_request(double seconds, int seed = 1) {
  TranscribeRequest r;
  r.audio = tone_wav(seconds, seed);
  return r;
}

AzureError::Details failure_of(Transcriber& t, const TranscribeRequest& r) {
  try {
    t.transcribe(r);
  } catch (const AzureError& e) {
    return e.details();
  }
  FAIL("the transcription succeeded");
  return {};
}

}  // namespace

TEST_CASE("short audio, simple format, with the key", "[azure][adapter]") {
  MockServer mock;
  Transcriber t(mock_config(mock));
  TranscribeRequest r = wav_request(3.0, 7);
  TranscribeResponse s = t.transcribe(r);
  CHECK(s.api == Api::short_audio);
  CHECK(s.status == "Success");
  CHECK(s.display_text == procpool::azure_mock::expected_text(r.audio));
  CHECK_FALSE(s.display_text.empty());
  CHECK(s.offset_ticks == 1'000'000);
  CHECK(s.duration_ticks == 29'000'000);
  CHECK(s.http_status == 200);
  CHECK(s.attempts == 1);
  CHECK_THAT(s.request_id, Has("mock-request-"));
  CHECK(s.total_ms >= s.last_attempt_ms);

  auto seen = mock.requests();
  REQUIRE(seen.size() == 1);
  CHECK(seen[0].endpoint == Endpoint::short_audio);
  CHECK(seen[0].auth == "key");
  CHECK(seen[0].query.at("language") == "en-US");
  CHECK(seen[0].query.at("format") == "simple");
  CHECK(seen[0].query.at("profanity") == "masked");
  CHECK_THAT(seen[0].content_type, Has("audio/wav; codecs=audio/pcm; samplerate=16000"));
  CHECK_FALSE(seen[0].expect_continue);  // small body: no Expect
  CHECK(seen[0].body_bytes == r.audio.size());

  // Deterministic: the same audio gives the same text, other audio another text.
  CHECK(t.transcribe(r).display_text == s.display_text);
  CHECK(t.transcribe(wav_request(3.0, 8)).display_text != s.display_text);
}

TEST_CASE("short audio, detailed format, custom-domain path, profanity raw", "[azure][adapter]") {
  MockServer mock;
  AzureConfig c = mock_config(mock);
  c.short_audio_url.clear();  // derived from the endpoint: /stt/speech/recognition/interactive/...
  Transcriber t(c);
  TranscribeRequest r = wav_request(2.0, 3);
  r.format = OutputFormat::detailed;
  r.profanity = Profanity::raw;
  r.locales = {"de-DE"};
  TranscribeResponse s = t.transcribe(r);
  REQUIRE(s.nbest.size() == 2);
  CHECK(s.display_text == s.nbest[0].display);  // DisplayText absent: falls back to NBest[0]
  CHECK(s.display_text == procpool::azure_mock::expected_text(r.audio));
  CHECK(s.nbest[0].confidence > s.nbest[1].confidence);
  CHECK_FALSE(s.nbest[0].lexical.empty());
  auto seen = mock.requests();
  REQUIRE(seen.size() == 1);
  CHECK(seen[0].path == "/stt/speech/recognition/interactive/cognitiveservices/v1");
  CHECK(seen[0].query.at("format") == "detailed");
  CHECK(seen[0].query.at("profanity") == "raw");
  CHECK(seen[0].query.at("language") == "de-DE");
}

TEST_CASE("silence comes back as InitialSilenceTimeout, not as an error", "[azure][adapter]") {
  MockServer mock;
  Transcriber t(mock_config(mock));
  TranscribeRequest r;
  r.audio = tone_wav(2.0, 1, 16000, 1, /*amplitude=*/0);
  TranscribeResponse s = t.transcribe(r);
  CHECK(s.status == "InitialSilenceTimeout");
  CHECK(s.display_text.empty());
  CHECK(s.attempts == 1);
}

TEST_CASE("fast transcription: long audio, phrases and words, diarization", "[azure][adapter]") {
  MockServer mock;
  Transcriber t(mock_config(mock));
  TranscribeRequest r = wav_request(70.0, 5);  // over 60 s: fast transcription
  TranscribeResponse s = t.transcribe(r);
  CHECK(s.api == Api::fast);
  CHECK(s.status == "Success");
  CHECK(s.audio_duration_ms == 70'000);
  CHECK(s.display_text == procpool::azure_mock::expected_text(r.audio));
  auto phrases = procpool::azure_mock::expected_phrases(r.audio);
  REQUIRE(s.phrases.size() == phrases.size());
  CHECK(s.phrases.size() == 15);
  CHECK(s.phrases[0].text == phrases[0]);
  CHECK(s.phrases[0].words.size() == 4);
  CHECK(s.phrases[0].locale == "en-US");
  CHECK_FALSE(s.phrases[0].speaker.has_value());
  CHECK(s.offset_ticks == 100 * 10'000);
  CHECK_THAT(s.request_id, Has("mock-request-"));
  auto seen = mock.requests();
  REQUIRE(seen.size() == 1);
  CHECK(seen[0].endpoint == Endpoint::fast);
  CHECK(seen[0].query.at("api-version") == "2024-11-15");
  CHECK_THAT(seen[0].content_type, Has("multipart/form-data; boundary="));
  CHECK_THAT(seen[0].definition, Has("\"locales\":[\"en-US\"]"));
  CHECK_THAT(seen[0].definition, Has("\"profanityFilterMode\":\"Masked\""));
  // 70 s of audio is 2.2 MB: sent with Expect: 100-continue, answered at once by the mock.
  CHECK(seen[0].expect_continue);

  TranscribeRequest d = wav_request(12.0, 6);
  d.diarization = true;
  d.max_speakers = 3;
  d.locales = {"en-US", "de-DE"};
  TranscribeResponse ds = t.transcribe(d);
  CHECK(ds.api == Api::fast);
  REQUIRE(ds.phrases.size() == 3);
  CHECK(ds.phrases[0].speaker == 1);
  CHECK(ds.phrases[1].speaker == 2);
  CHECK_THAT(mock.requests().back().definition,
             Has("\"diarization\":{\"enabled\":true,\"maxSpeakers\":3}"));

  TranscribeRequest forced = wav_request(2.0, 9);  // short enough, but the caller says fast
  forced.api = Api::fast;
  forced.profanity = Profanity::raw;
  forced.channels = {0};
  TranscribeResponse fs = t.transcribe(forced);
  CHECK(fs.api == Api::fast);
  CHECK(fs.display_text == procpool::azure_mock::expected_text(forced.audio));
  REQUIRE_FALSE(fs.phrases.empty());
  CHECK(fs.phrases[0].channel == 0);
  CHECK_THAT(mock.requests().back().definition, Has("\"profanityFilterMode\":\"None\""));
}

TEST_CASE("fast transcription passes other formats through by content type", "[azure][adapter]") {
  MockServer mock;
  Transcriber t(mock_config(mock));
  TranscribeRequest r;
  r.content_type = "audio/mpeg";
  r.audio = as_bytes(std::string(40'000, 'm'));
  TranscribeResponse s = t.transcribe(r);
  CHECK(s.api == Api::fast);
  CHECK(s.display_text == procpool::azure_mock::expected_text(r.audio));
  CHECK(mock.requests().back().endpoint == Endpoint::fast);
}

TEST_CASE("chunked upload with Expect: 100-continue is answered promptly", "[azure][adapter]") {
  MockServer mock;
  AzureConfig c = mock_config(mock);
  c.chunked_upload = true;
  c.expect_continue_timeout = milliseconds(20'000);  // a mock that ignored Expect would cost 20 s
  Transcriber t(c);
  TranscribeRequest r = wav_request(10.0, 2);
  auto started = SteadyClock::now();
  TranscribeResponse s = t.transcribe(r);
  CHECK(SteadyClock::now() - started < std::chrono::seconds(10));
  CHECK(s.display_text == procpool::azure_mock::expected_text(r.audio));
  auto seen = mock.requests();
  REQUIRE(seen.size() == 1);
  CHECK(seen[0].chunked);
  CHECK(seen[0].expect_continue);
  CHECK(seen[0].body_bytes == r.audio.size());
}

TEST_CASE("retryable failures are retried, then succeed", "[azure][retry]") {
  MockServer mock;
  Transcriber t(mock_config(mock));
  TranscribeRequest r = wav_request(1.0);
  std::string expected = procpool::azure_mock::expected_text(r.audio);

  auto one_fault_then_success = [&](Fault fault, Endpoint endpoint = Endpoint::short_audio) {
    auto before = mock.counters().total;
    mock.push_fault(endpoint, fault);
    TranscribeResponse s = t.transcribe(r);
    CHECK(s.attempts == 2);
    CHECK(s.display_text == expected);
    CHECK(mock.counters().total - before == 2);
    CHECK(mock.pending_faults() == 0);
  };
  SECTION("408") {
    one_fault_then_success(Fault::http(408));
  }
  SECTION("429 with Retry-After: 0") {
    one_fault_then_success(Fault::http(429, 0));
  }
  SECTION("500") {
    one_fault_then_success(Fault::http(500));
  }
  SECTION("502") {
    one_fault_then_success(Fault::http(502));
  }
  SECTION("503") {
    one_fault_then_success(Fault::http(503));
  }
  SECTION("504") {
    one_fault_then_success(Fault::http(504));
  }
  SECTION("dropped connection") {
    one_fault_then_success(Fault::drop());
  }
  SECTION("RecognitionStatus Error") {
    one_fault_then_success(Fault::recognition_error());
  }
  SECTION("fast transcription 503") {
    r = wav_request(61.0);
    expected = procpool::azure_mock::expected_text(r.audio);
    one_fault_then_success(Fault::http(503), Endpoint::fast);
  }
  SECTION("a slow response past the per-attempt deadline") {
    AzureConfig c = mock_config(mock);
    c.attempt_timeout = milliseconds(300);
    Transcriber quick(c);
    mock.push_fault(Endpoint::short_audio, Fault::slow(milliseconds(5'000)));
    TranscribeResponse s = quick.transcribe(r);
    CHECK(s.attempts == 2);
    CHECK(s.display_text == expected);
  }
}

TEST_CASE("Retry-After is honoured", "[azure][retry]") {
  MockServer mock;
  AzureConfig c = mock_config(mock);
  c.backoff_initial = milliseconds(1);  // without Retry-After the wait would be ~1 ms
  Transcriber t(c);
  mock.push_fault(Endpoint::short_audio, Fault::http(429, 1));
  auto started = SteadyClock::now();
  TranscribeResponse s = t.transcribe(wav_request(1.0));
  CHECK(SteadyClock::now() - started >= milliseconds(1'000));
  CHECK(s.attempts == 2);
  CHECK(s.backoff_ms >= 1000);
}

TEST_CASE("400, 401, 403, 413 and 415 are never retried", "[azure][retry]") {
  MockServer mock;
  Transcriber t(mock_config(mock));
  struct Case {
    int status;
    ErrorKind kind;
  };
  for (Case k : {Case{400, ErrorKind::bad_request}, Case{401, ErrorKind::authentication},
                 Case{403, ErrorKind::authentication}, Case{413, ErrorKind::bad_request},
                 Case{415, ErrorKind::bad_request}, Case{422, ErrorKind::bad_request}}) {
    CAPTURE(k.status);
    auto before = mock.counters().total;
    mock.push_fault(Endpoint::short_audio, Fault::http(k.status));
    AzureError::Details d = failure_of(t, wav_request(1.0));
    CHECK(d.kind == k.kind);
    CHECK(d.http_status == k.status);
    CHECK(d.attempts == 1);
    CHECK_FALSE(d.retryable);
    CHECK(mock.counters().total - before == 1);
  }
  // Both error body shapes are read: the gateway's wrapped one and the service's top-level one.
  mock.push_fault(Endpoint::short_audio, Fault::http(401));
  AzureError::Details wrapped = failure_of(t, wav_request(1.0));
  CHECK(wrapped.code == "401");
  CHECK_THAT(wrapped.message, Has("Access denied"));
  mock.push_fault(Endpoint::short_audio, Fault::http(415));
  AzureError::Details top = failure_of(t, wav_request(1.0));
  CHECK(top.code == "UnsupportedMediaType");
  CHECK_THAT(top.message, Has("scripted fault 415"));
}

TEST_CASE("retries are bounded and the last error is reported", "[azure][retry]") {
  MockServer mock;
  AzureConfig c = mock_config(mock);
  c.max_retries = 3;
  Transcriber t(c);
  for (int i = 0; i < 4; ++i)
    mock.push_fault(Endpoint::short_audio, Fault::http(429, 0));
  AzureError::Details d = failure_of(t, wav_request(1.0));
  CHECK(d.kind == ErrorKind::throttled);
  CHECK(d.code == "TooManyRequests");
  CHECK(d.attempts == 4);
  CHECK(mock.counters().short_audio == 4);
  CHECK(t.stats().retries == 3);

  for (int i = 0; i < 4; ++i)
    mock.push_fault(Endpoint::short_audio, Fault::http(503));
  d = failure_of(t, wav_request(1.0));
  CHECK(d.kind == ErrorKind::service_error);
  CHECK(d.http_status == 503);
  CHECK(d.attempts == 4);
}

TEST_CASE("the total deadline bounds all attempts", "[azure][retry]") {
  MockServer mock;
  AzureConfig c = mock_config(mock);
  c.attempt_timeout = milliseconds(200);
  c.total_timeout = milliseconds(500);
  c.max_retries = 10;
  Transcriber t(c);
  for (int i = 0; i < 10; ++i)
    mock.push_fault(Endpoint::short_audio, Fault::slow(milliseconds(3'000)));
  auto started = SteadyClock::now();
  AzureError::Details d = failure_of(t, wav_request(1.0));
  CHECK(SteadyClock::now() - started < milliseconds(2'000));
  CHECK(d.kind == ErrorKind::timeout);
  CHECK(d.attempts >= 2);
  CHECK(d.attempts <= 4);
  mock.stop();  // wakes the slow handlers still waiting
}

TEST_CASE("a job deadline caps the adapter's own deadline", "[azure][retry]") {
  MockServer mock;
  Transcriber t(mock_config(mock));
  mock.push_fault(Endpoint::short_audio, Fault::slow(milliseconds(5'000)));
  auto started = SteadyClock::now();
  try {
    t.transcribe(wav_request(1.0), started + milliseconds(400));
    FAIL("no error");
  } catch (const AzureError& e) {
    CHECK(e.kind() == ErrorKind::timeout);
  }
  CHECK(SteadyClock::now() - started < milliseconds(2'000));
  mock.stop();
}

TEST_CASE("connection refused is a retried connection error", "[azure][retry]") {
  std::string dead_url;
  {
    MockServer gone;
    dead_url = gone.base_url();
  }  // nothing listens on that port any more
  AzureConfig c;
  c.key = "k-123456";
  c.endpoint = dead_url;
  c.allow_http = true;
  c.max_retries = 2;
  c.backoff_initial = milliseconds(1);
  Transcriber t(c);
  AzureError::Details d = failure_of(t, wav_request(1.0));
  CHECK(d.kind == ErrorKind::connection);
  CHECK(d.attempts == 3);
  CHECK(d.http_status == 0);
  CHECK_THAT(d.message, Has("127.0.0.1"));
}

TEST_CASE("the key never appears in errors", "[azure][secrets]") {
  MockServer mock;
  SECTION("a wrong key: 401, not retried, key not quoted") {
    AzureConfig c = mock_config(mock);
    c.key = "wrong-key-0xDEADBEEF-secret";
    Transcriber t(c);
    AzureError::Details d = failure_of(t, wav_request(1.0));
    CHECK(d.kind == ErrorKind::authentication);
    CHECK(d.http_status == 401);
    CHECK(d.attempts == 1);
    CHECK(d.message.find(c.key) == std::string::npos);
    AzureError e(d);
    CHECK(std::string(e.what()).find(c.key) == std::string::npos);
  }
  SECTION("a server that echoes the key back is redacted") {
    Transcriber t(mock_config(mock));
    mock.push_fault(Endpoint::short_audio, Fault::echo_key());
    try {
      t.transcribe(wav_request(1.0));
      FAIL("no error");
    } catch (const AzureError& e) {
      std::string what = e.what();
      CHECK(what.find(mock.options().key) == std::string::npos);
      CHECK_THAT(what, Has("[redacted]"));
    }
  }
}

TEST_CASE("token mode: issueToken once, reuse for 9 minutes, refresh once on 401",
          "[azure][token]") {
  MockServer mock;
  AzureConfig c = mock_config(mock);
  c.auth = AuthMode::token;
  auto fake_now = SteadyClock::now();
  Transcriber t(c, [&] { return fake_now; });
  TranscribeRequest r = wav_request(1.0);

  CHECK(t.transcribe(r).attempts == 1);
  CHECK(t.transcribe(r).attempts == 1);
  CHECK(mock.counters().tokens_issued == 1);
  for (const auto& seen : mock.requests()) {
    if (seen.endpoint == Endpoint::short_audio) CHECK(seen.auth == "bearer");
    if (seen.endpoint == Endpoint::token) CHECK(seen.auth == "key");
  }

  fake_now += std::chrono::minutes(8);
  t.transcribe(r);
  CHECK(mock.counters().tokens_issued == 1);
  fake_now += std::chrono::minutes(2);  // 10 minutes after the first: past the 9-minute reuse
  t.transcribe(r);
  CHECK(mock.counters().tokens_issued == 2);

  // The service stops accepting the cached token: one 401, one refresh, then success.
  mock.revoke_tokens();
  TranscribeResponse s = t.transcribe(r);
  CHECK(s.attempts == 2);
  CHECK(mock.counters().tokens_issued == 3);
  CHECK(t.stats().tokens_fetched == 3);

  // A 401 that persists after the refresh is an authentication error, not a loop.
  mock.push_fault(Endpoint::short_audio, Fault::http(401));
  mock.push_fault(Endpoint::short_audio, Fault::http(401));
  AzureError::Details d = failure_of(t, r);
  CHECK(d.kind == ErrorKind::authentication);
  CHECK(d.attempts == 2);
  CHECK(mock.counters().tokens_issued == 4);
}

TEST_CASE("token mode with a wrong key fails at issueToken without leaking it", "[azure][token]") {
  MockServer mock;
  AzureConfig c = mock_config(mock);
  c.auth = AuthMode::token;
  c.key = "not-the-key-77";
  Transcriber t(c);
  AzureError::Details d = failure_of(t, wav_request(1.0));
  CHECK(d.kind == ErrorKind::authentication);
  CHECK(d.http_status == 401);
  CHECK(d.attempts == 1);
  CHECK_THAT(d.message, Has("issueToken"));
  CHECK(d.message.find(c.key) == std::string::npos);
  CHECK(mock.counters().short_audio == 0);
}

TEST_CASE("one curl handle per origin, bounded over 10,000 jobs", "[azure][cache]") {
  MockServer mock;
  AzureConfig c = mock_config(mock);
  c.max_retries = 0;
  Transcriber t(c);
  TranscribeRequest r = wav_request(0.05);
  std::string expected = procpool::azure_mock::expected_text(r.audio);
  for (int i = 0; i < 10'000; ++i) {
    TranscribeResponse s = t.transcribe(r);
    if (s.display_text != expected) FAIL("job " << i << " got " << s.display_text);
  }
  ClientStats stats = t.stats();
  CHECK(stats.requests == 10'000);
  CHECK(stats.handles_created == 1);
  CHECK(stats.handles_cached == 1);
  CHECK(mock.counters().short_audio == 10'000);
}

TEST_CASE("the handle cache evicts the least recently used origin", "[azure][cache]") {
  MockServer a;
  MockServer b;
  TranscribeRequest r = wav_request(0.05);
  // Two origins: short audio on `a`, fast transcription on `b`; room for one handle.
  AzureConfig split = mock_config(a);
  split.fast_url = b.base_url() + "/speechtotext/transcriptions:transcribe";
  split.handle_cache_capacity = 1;
  Transcriber s(split);
  TranscribeRequest longer = wav_request(61.0);
  for (int i = 0; i < 20; ++i) {
    s.transcribe(i % 2 == 0 ? r : longer);
    CHECK(s.stats().handles_cached == 1);
  }
  CHECK(s.stats().handles_created == 20);
  CHECK(s.stats().handles_evicted == 19);
  CHECK(a.counters().short_audio == 10);
  CHECK(b.counters().fast == 10);
  // With room for both origins, two handles serve every request.
  split.handle_cache_capacity = 2;
  Transcriber roomy(split);
  for (int i = 0; i < 20; ++i)
    roomy.transcribe(i % 2 == 0 ? r : longer);
  CHECK(roomy.stats().handles_created == 2);
  CHECK(roomy.stats().handles_cached == 2);
}
