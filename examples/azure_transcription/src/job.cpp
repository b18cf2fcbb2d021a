#include "azure_transcription/job.hpp"

#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>
#include <utility>

#include "json_numbers.hpp"

namespace procpool::azure {

namespace {

nlohmann::json options_json(const TranscribeRequest& r) {
  return {{"content_type", r.content_type},
          {"locales", r.locales},
          {"api", to_string(r.api)},
          {"format", to_string(r.format)},
          {"profanity", to_string(r.profanity)},
          {"diarization", r.diarization},
          {"max_speakers", r.max_speakers},
          {"channels", r.channels},
          {"attempt_timeout_ms", r.attempt_timeout.count()},
          {"total_timeout_ms", r.total_timeout.count()}};
}

nlohmann::json response_json(const TranscribeResponse& r) {
  nlohmann::json nbest = nlohmann::json::array();
  for (const auto& n : r.nbest) {
    nbest.push_back({{"confidence", n.confidence},
                     {"lexical", n.lexical},
                     {"itn", n.itn},
                     {"masked_itn", n.masked_itn},
                     {"display", n.display}});
  }
  nlohmann::json phrases = nlohmann::json::array();
  for (const auto& p : r.phrases) {
    nlohmann::json words = nlohmann::json::array();
    for (const auto& w : p.words) {
      words.push_back(
          {{"text", w.text}, {"offset_ms", w.offset_ms}, {"duration_ms", w.duration_ms}});
    }
    nlohmann::json phrase = {
        {"text", p.text},     {"offset_ms", p.offset_ms},   {"duration_ms", p.duration_ms},
        {"locale", p.locale}, {"confidence", p.confidence}, {"words", std::move(words)}};
    if (p.speaker) phrase["speaker"] = *p.speaker;
    if (p.channel) phrase["channel"] = *p.channel;
    phrases.push_back(std::move(phrase));
  }
  return {{"api", to_string(r.api)},
          {"status", r.status},
          {"display_text", r.display_text},
          {"offset_ticks", r.offset_ticks},
          {"duration_ticks", r.duration_ticks},
          {"audio_duration_ms", r.audio_duration_ms},
          {"nbest", std::move(nbest)},
          {"phrases", std::move(phrases)},
          {"request_id", r.request_id},
          {"http_status", r.http_status},
          {"attempts", r.attempts},
          {"total_ms", r.total_ms},
          {"last_attempt_ms", r.last_attempt_ms},
          {"backoff_ms", r.backoff_ms}};
}

template <class E>
E enum_field(const nlohmann::json& j, const char* name,
             std::optional<E> (*parse)(std::string_view)) {
  auto value = parse(j.at(name).get<std::string>());
  if (!value) throw procpool::CodecError(std::string("bad value for ") + name);
  return *value;
}

/// An integer field as T: only a JSON integer that fits T is accepted.
template <class T>
T integer(const nlohmann::json& value, const char* name) {
  if (auto v = detail::checked_integer<T>(value)) return *v;
  throw procpool::CodecError(std::string("bad value for ") + name + ": " +
                             value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) +
                             " is not an integer in range");
}

template <class T>
T integer_field(const nlohmann::json& j, const char* name) {
  return integer<T>(j.at(name), name);
}

}  // namespace

std::string to_json(const TranscribeResponse& response) {
  return response_json(response).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string request_options_to_json(const TranscribeRequest& request) {
  return options_json(request).dump();
}

Transcriber& worker_transcriber() {
  // Created on first use and kept for the life of the worker process: its handle cache and token
  // outlive every job. A configuration error is rethrown to each job until it is fixed.
  static std::unique_ptr<Transcriber> instance;
  if (!instance) instance = std::make_unique<Transcriber>(config_from_environment());
  return *instance;
}

void register_transcribe_job(JobRegistry& registry) {
  registry.add<TranscribeJob>([](JobContext& context, const TranscribeRequest& request) {
    return worker_transcriber().transcribe(request, context.deadline());
  });
}

}  // namespace procpool::azure

using procpool::azure::TranscribeRequest;
using procpool::azure::TranscribeResponse;

procpool::Bytes procpool::Codec<TranscribeRequest>::encode(const TranscribeRequest& request) {
  std::string options = procpool::azure::request_options_to_json(request);
  auto n = static_cast<std::uint32_t>(options.size());
  procpool::Bytes out;
  out.reserve(4 + options.size() + request.audio.size());
  for (int i = 0; i < 4; ++i)
    out.push_back(static_cast<std::byte>((n >> (8 * i)) & 0xff));
  const auto* p = reinterpret_cast<const std::byte*>(options.data());
  out.insert(out.end(), p, p + options.size());
  out.insert(out.end(), request.audio.begin(), request.audio.end());
  return out;
}

TranscribeRequest procpool::Codec<TranscribeRequest>::decode(std::span<const std::byte> bytes) {
  using namespace procpool::azure;
  if (bytes.size() < 4) throw procpool::CodecError("azure.transcribe request shorter than 4 bytes");
  std::uint32_t n = 0;
  for (int i = 0; i < 4; ++i)
    n |= static_cast<std::uint32_t>(bytes[i]) << (8 * i);
  if (n > bytes.size() - 4) throw procpool::CodecError("azure.transcribe request: bad JSON length");
  std::string_view text(reinterpret_cast<const char*>(bytes.data() + 4), n);
  try {
    auto j = nlohmann::json::parse(text);
    TranscribeRequest r;
    r.content_type = j.at("content_type").get<std::string>();
    r.locales = j.at("locales").get<std::vector<std::string>>();
    r.api = enum_field<Api>(j, "api", parse_api);
    r.format = enum_field<OutputFormat>(j, "format", parse_output_format);
    r.profanity = enum_field<Profanity>(j, "profanity", parse_profanity);
    r.diarization = j.at("diarization").get<bool>();
    r.max_speakers = integer_field<int>(j, "max_speakers");
    const auto& channels = j.at("channels");
    if (!channels.is_array()) throw procpool::CodecError("bad value for channels: not an array");
    for (const auto& channel : channels)
      r.channels.push_back(integer<int>(channel, "channels"));
    r.attempt_timeout =
        std::chrono::milliseconds(integer_field<std::int64_t>(j, "attempt_timeout_ms"));
    r.total_timeout = std::chrono::milliseconds(integer_field<std::int64_t>(j, "total_timeout_ms"));
    r.audio.assign(bytes.begin() + 4 + n, bytes.end());
    return r;
  } catch (const nlohmann::json::exception& e) {
    throw procpool::CodecError(std::string("azure.transcribe request: ") + e.what());
  }
}

procpool::Bytes procpool::Codec<TranscribeResponse>::encode(const TranscribeResponse& response) {
  std::string text = procpool::azure::to_json(response);
  const auto* p = reinterpret_cast<const std::byte*>(text.data());
  return procpool::Bytes(p, p + text.size());
}

TranscribeResponse procpool::Codec<TranscribeResponse>::decode(std::span<const std::byte> bytes) {
  using namespace procpool::azure;
  std::string_view text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  try {
    auto j = nlohmann::json::parse(text);
    TranscribeResponse r;
    r.api = enum_field<Api>(j, "api", parse_api);
    r.status = j.at("status").get<std::string>();
    r.display_text = j.at("display_text").get<std::string>();
    r.offset_ticks = integer_field<std::int64_t>(j, "offset_ticks");
    r.duration_ticks = integer_field<std::int64_t>(j, "duration_ticks");
    r.audio_duration_ms = integer_field<std::int64_t>(j, "audio_duration_ms");
    for (const auto& n : j.at("nbest")) {
      r.nbest.push_back({n.at("confidence").get<double>(), n.at("lexical").get<std::string>(),
                         n.at("itn").get<std::string>(), n.at("masked_itn").get<std::string>(),
                         n.at("display").get<std::string>()});
    }
    for (const auto& p : j.at("phrases")) {
      Phrase phrase;
      phrase.text = p.at("text").get<std::string>();
      phrase.offset_ms = integer_field<std::int64_t>(p, "offset_ms");
      phrase.duration_ms = integer_field<std::int64_t>(p, "duration_ms");
      phrase.locale = p.at("locale").get<std::string>();
      phrase.confidence = p.at("confidence").get<double>();
      if (p.contains("speaker")) phrase.speaker = integer_field<int>(p, "speaker");
      if (p.contains("channel")) phrase.channel = integer_field<int>(p, "channel");
      for (const auto& w : p.at("words")) {
        phrase.words.push_back({w.at("text").get<std::string>(),
                                integer_field<std::int64_t>(w, "offset_ms"),
                                integer_field<std::int64_t>(w, "duration_ms")});
      }
      r.phrases.push_back(std::move(phrase));
    }
    r.request_id = j.at("request_id").get<std::string>();
    r.http_status = integer_field<int>(j, "http_status");
    r.attempts = integer_field<unsigned>(j, "attempts");
    r.total_ms = j.at("total_ms").get<double>();
    r.last_attempt_ms = j.at("last_attempt_ms").get<double>();
    r.backoff_ms = j.at("backoff_ms").get<double>();
    return r;
  } catch (const nlohmann::json::exception& e) {
    throw procpool::CodecError(std::string("azure.transcribe response: ") + e.what());
  }
}
