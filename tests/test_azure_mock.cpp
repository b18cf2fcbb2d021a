// The mock itself, checked against the contract with plain HTTP requests (no adapter): status
// codes, both error shapes, query and header validation, tokens, chunked uploads, faults.
#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "azure_catch.hpp"
#include "azure_test_helpers.hpp"
#include "mock_server.hpp"

using procpool::azure_mock::Endpoint;
using procpool::azure_mock::Fault;
using procpool::azure_mock::MockOptions;
using procpool::azure_mock::MockServer;
using procpool::azure_test::Has;
using procpool::azure_test::tone_wav;

namespace {

struct Reply {
  CURLcode curl = CURLE_OK;
  long status = 0;
  std::string body;
  std::map<std::string, std::string> headers;
};

std::size_t on_body(char* p, std::size_t s, std::size_t n, void* u) {
  static_cast<Reply*>(u)->body.append(p, s * n);
  return s * n;
}
std::size_t on_header(char* p, std::size_t s, std::size_t n, void* u) {
  std::string line(p, s * n);
  auto colon = line.find(':');
  if (colon != std::string::npos) {
    std::string name = line.substr(0, colon);
    for (char& c : name)
      c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::string value = line.substr(colon + 1);
    value.erase(0, value.find_first_not_of(' '));
    value.erase(value.find_last_not_of("\r\n") + 1);
    static_cast<Reply*>(u)->headers[name] = value;
  }
  return s * n;
}

struct Part {
  std::string name;
  std::string data;
  std::string type;
};

// POST `body` (or a multipart form) with `headers`.
Reply post(const std::string& url, const std::vector<std::string>& headers, const std::string& body,
           const std::vector<Part>& parts = {}, long expect_timeout_ms = 1000) {
  Reply r;
  CURL* h = curl_easy_init();
  curl_slist* list = nullptr;
  for (const auto& line : headers)
    list = curl_slist_append(list, line.c_str());
  curl_mime* mime = nullptr;
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, list);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &r);
  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, &r);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 20'000L);
  curl_easy_setopt(h, CURLOPT_EXPECT_100_TIMEOUT_MS, expect_timeout_ms);
  if (!parts.empty()) {
    mime = curl_mime_init(h);
    for (const auto& p : parts) {
      curl_mimepart* part = curl_mime_addpart(mime);
      curl_mime_name(part, p.name.c_str());
      curl_mime_data(part, p.data.data(), p.data.size());
      if (!p.type.empty()) {
        curl_mime_type(part, p.type.c_str());
        curl_mime_filename(part, "audio");
      }
    }
    curl_easy_setopt(h, CURLOPT_MIMEPOST, mime);
  } else {
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  }
  r.curl = curl_easy_perform(h);
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r.status);
  curl_mime_free(mime);
  curl_slist_free_all(list);
  curl_easy_cleanup(h);
  return r;
}

std::string wav_text(double seconds, int seed = 1, int amplitude = 3000) {
  auto bytes = tone_wav(seconds, seed, 16000, 1, amplitude);
  return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

const char* wav_type = "Content-Type: audio/wav; codecs=audio/pcm; samplerate=16000";

}  // namespace

TEST_CASE("mock short audio: success, query checks, codes", "[azure][mock]") {
  MockServer mock;
  std::string key = "Ocp-Apim-Subscription-Key: " + mock.options().key;
  std::string url = mock.base_url() + "/speech/recognition/conversation/cognitiveservices/v1";
  std::string audio = wav_text(2.0, 4);

  Reply ok = post(url + "?language=en-US", {key, wav_type}, audio);
  CHECK(ok.status == 200);
  auto j = nlohmann::json::parse(ok.body);
  CHECK(j["RecognitionStatus"] == "Success");
  CHECK(j["DisplayText"] ==
        procpool::azure_mock::expected_text(std::as_bytes(std::span(audio.data(), audio.size()))));
  CHECK(j["Offset"].is_number_integer());
  CHECK_FALSE(ok.headers["x-requestid"].empty());

  CHECK(post(url, {key, wav_type}, audio).status == 400);  // no language
  CHECK(post(url + "?language=en-US&format=fancy", {key, wav_type}, audio).status == 400);
  CHECK(post(url + "?language=en-US&profanity=bleep", {key, wav_type}, audio).status == 400);
  CHECK(post(url + "?language=en-US", {key, "Content-Type: text/plain"}, audio).status == 415);
  CHECK(post(url + "?language=en-US", {key, wav_type}, "").status == 408);  // no audio
  CHECK(post(url + "?language=en-US", {key, wav_type}, audio.substr(0, 30)).status == 400);
  CHECK(post(url + "?language=en-US", {key, wav_type}, wav_text(61.0)).status == 400);
  // codec= is accepted too; an unknown codec comes back as InitialSilenceTimeout.
  CHECK(post(url + "?language=en-US", {key, "Content-Type: audio/wav; codec=audio/pcm"}, audio)
            .status == 200);
  Reply odd = post(url + "?language=en-US", {key, "Content-Type: audio/wav; codecs=mp3"}, audio);
  CHECK(nlohmann::json::parse(odd.body)["RecognitionStatus"] == "InitialSilenceTimeout");
  Reply silent = post(url + "?language=en-US", {key, wav_type}, wav_text(1.0, 1, 0));
  CHECK(nlohmann::json::parse(silent.body)["RecognitionStatus"] == "InitialSilenceTimeout");
  // Detailed: NBest.
  Reply detailed = post(url + "?language=en-US&format=detailed", {key, wav_type}, audio);
  auto d = nlohmann::json::parse(detailed.body);
  REQUIRE(d["NBest"].is_array());
  CHECK(d["NBest"][0]["Display"] == j["DisplayText"]);
  // Unknown paths: 404 in the service's top-level shape.
  Reply missing = post(mock.base_url() + "/nope", {key, wav_type}, audio);
  CHECK(missing.status == 404);
  CHECK(nlohmann::json::parse(missing.body)["code"] == "NotFound");
}

TEST_CASE("mock auth: key, wrong key, none, Bearer from issueToken", "[azure][mock]") {
  MockOptions options;
  options.missing_auth_status = 403;
  MockServer mock(options);
  std::string url =
      mock.base_url() + "/speech/recognition/conversation/cognitiveservices/v1?language=en-US";
  std::string audio = wav_text(1.0);
  Reply wrong = post(url, {"Ocp-Apim-Subscription-Key: nope", wav_type}, audio);
  CHECK(wrong.status == 401);
  auto w = nlohmann::json::parse(wrong.body);
  CHECK(w["error"]["code"] == "401");  // the gateway's wrapped shape
  CHECK_THAT(w["error"]["message"].get<std::string>(), Has("invalid subscription key"));
  CHECK(post(url, {wav_type}, audio).status == 403);  // configurable: the sources say 401 or 403

  std::string token_url = mock.base_url() + "/sts/v1.0/issueToken";
  CHECK(post(token_url, {"Ocp-Apim-Subscription-Key: nope"}, "").status == 401);
  Reply token = post(token_url, {"Ocp-Apim-Subscription-Key: " + mock.options().key}, "");
  REQUIRE(token.status == 200);
  CHECK_FALSE(token.body.empty());
  CHECK(post(url, {"Authorization: Bearer " + token.body, wav_type}, audio).status == 200);
  CHECK(post(url, {"Authorization: Bearer forged", wav_type}, audio).status == 401);
  mock.revoke_tokens();
  CHECK(post(url, {"Authorization: Bearer " + token.body, wav_type}, audio).status == 401);
  CHECK(mock.counters().tokens_issued == 1);
}

TEST_CASE("mock fast transcription: multipart, api-version, definition checks", "[azure][mock]") {
  MockServer mock;
  std::string key = "Ocp-Apim-Subscription-Key: " + mock.options().key;
  std::string url = mock.base_url() + "/speechtotext/transcriptions:transcribe";
  std::string audio = wav_text(12.0, 3);
  Part part{"audio", audio, "audio/wav"};
  auto def = [](const std::string& json) { return Part{"definition", json, ""}; };

  Reply ok =
      post(url + "?api-version=2024-11-15", {key}, "", {part, def(R"({"locales":["en-US"]})")});
  REQUIRE(ok.status == 200);
  auto j = nlohmann::json::parse(ok.body);
  CHECK(j["durationMilliseconds"] == 12000);
  CHECK(j["phrases"].size() == 3);
  CHECK(j["phrases"][0].contains("offsetMilliseconds"));
  CHECK(j["phrases"][0]["words"].size() == 4);
  CHECK(j["combinedPhrases"][0]["text"] ==
        procpool::azure_mock::expected_text(std::as_bytes(std::span(audio.data(), audio.size()))));
  CHECK_FALSE(ok.headers["apim-request-id"].empty());
  CHECK(post(url + "?api-version=2025-10-15", {key}, "", {part, def("{}")}).status == 200);

  auto code_of = [](const Reply& r) { return nlohmann::json::parse(r.body)["code"]; };
  Reply no_version = post(url, {key}, "", {part, def("{}")});
  CHECK(no_version.status == 400);
  CHECK(code_of(no_version) == "InvalidArgument");  // the service's top-level shape
  CHECK(post(url + "?api-version=1999-01-01", {key}, "", {part, def("{}")}).status == 400);
  Reply not_multipart = post(url + "?api-version=2024-11-15", {key, wav_type}, audio);
  CHECK(not_multipart.status == 415);
  CHECK(code_of(not_multipart) == "UnsupportedMediaType");
  CHECK(post(url + "?api-version=2024-11-15", {key}, "", {def("{}")}).status == 400);  // no audio
  CHECK(post(url + "?api-version=2024-11-15", {key}, "", {part}).status == 400);  // no definition
  CHECK(post(url + "?api-version=2024-11-15", {key}, "", {part, def("{oops")}).status == 400);
  CHECK(post(url + "?api-version=2024-11-15", {key}, "",
             {part, def(R"({"profanityFilterMode":"Loud"})")})
            .status == 400);
  CHECK(post(url + "?api-version=2024-11-15", {key}, "",
             {part, def(R"({"diarization":{"enabled":true,"maxSpeakers":40}})")})
            .status == 400);
  CHECK(post(url + "?api-version=2024-11-15", {key}, "",
             {part, def(R"({"diarization":{"enabled":true},"channels":[0,1]})")})
            .status == 400);
  Reply diarized = post(url + "?api-version=2024-11-15", {key}, "",
                        {part, def(R"({"diarization":{"enabled":true,"maxSpeakers":2}})")});
  CHECK(nlohmann::json::parse(diarized.body)["phrases"][1]["speaker"] == 2);
}

TEST_CASE("mock: chunked upload with Expect: 100-continue is answered at once", "[azure][mock]") {
  MockServer mock;
  std::string url =
      mock.base_url() + "/speech/recognition/conversation/cognitiveservices/v1?language=en-US";
  std::string audio = wav_text(5.0);
  // curl sends a chunked body only after 100 Continue or after the (here 20 s) expect timeout.
  CURL* h = curl_easy_init();
  Reply r;
  curl_slist* list = nullptr;
  list = curl_slist_append(list, ("Ocp-Apim-Subscription-Key: " + mock.options().key).c_str());
  list = curl_slist_append(list, wav_type);
  list = curl_slist_append(list, "Transfer-Encoding: chunked");
  list = curl_slist_append(list, "Expect: 100-continue");
  struct Source {
    const std::string* data;
    std::size_t at;
  } source{&audio, 0};
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_POST, 1L);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, list);
  curl_easy_setopt(
      h, CURLOPT_READFUNCTION,
      +[](char* out, std::size_t s, std::size_t n, void* u) -> std::size_t {
        auto* src = static_cast<Source*>(u);
        std::size_t k = std::min(s * n, std::min<std::size_t>(4096, src->data->size() - src->at));
        std::memcpy(out, src->data->data() + src->at, k);
        src->at += k;
        return k;
      });
  curl_easy_setopt(h, CURLOPT_READDATA, &source);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &r);
  curl_easy_setopt(h, CURLOPT_EXPECT_100_TIMEOUT_MS, 20'000L);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 30'000L);
  auto started = std::chrono::steady_clock::now();
  CHECK(curl_easy_perform(h) == CURLE_OK);
  CHECK(std::chrono::steady_clock::now() - started < std::chrono::seconds(10));
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r.status);
  curl_slist_free_all(list);
  curl_easy_cleanup(h);
  CHECK(r.status == 200);
  CHECK(nlohmann::json::parse(r.body)["DisplayText"] ==
        procpool::azure_mock::expected_text(std::as_bytes(std::span(audio.data(), audio.size()))));
  auto seen = mock.requests();
  REQUIRE(seen.size() == 1);
  CHECK(seen[0].chunked);
  CHECK(seen[0].expect_continue);
  CHECK(seen[0].body_bytes == audio.size());
}

TEST_CASE("mock faults: 429 with Retry-After, 5xx, drop, slow; FIFO per endpoint",
          "[azure][mock]") {
  MockServer mock;
  std::string key = "Ocp-Apim-Subscription-Key: " + mock.options().key;
  std::string url =
      mock.base_url() + "/speech/recognition/conversation/cognitiveservices/v1?language=en-US";
  std::string audio = wav_text(1.0);
  mock.push_fault(Endpoint::fast, Fault::http(500));  // not consumed by short audio
  mock.push_fault(Endpoint::short_audio, Fault::http(429, 7));
  mock.push_fault(Endpoint::any, Fault::http(503));
  mock.push_fault(Endpoint::short_audio, Fault::drop());
  mock.push_fault(Endpoint::short_audio, Fault::slow(std::chrono::milliseconds(300)));

  Reply throttled = post(url, {key, wav_type}, audio);
  CHECK(throttled.status == 429);
  CHECK(throttled.headers["retry-after"] == "7");
  auto t = nlohmann::json::parse(throttled.body);
  CHECK(t["code"] == "TooManyRequests");
  CHECK(t["details"].is_null());
  CHECK(post(url, {key, wav_type}, audio).status == 503);
  Reply dropped = post(url, {key, wav_type}, audio);
  CHECK(dropped.curl != CURLE_OK);
  auto started = std::chrono::steady_clock::now();
  CHECK(post(url, {key, wav_type}, audio).status == 200);
  CHECK(std::chrono::steady_clock::now() - started >= std::chrono::milliseconds(300));
  CHECK(post(url, {key, wav_type}, audio).status == 200);
  CHECK(mock.pending_faults() == 1);  // the fast one is still waiting
  auto counts = mock.counters();
  CHECK(counts.faults_applied == 4);
  CHECK(counts.short_audio == 5);
  CHECK(counts.by_status[429] == 1);
  CHECK(counts.by_status[-1] == 1);
}
