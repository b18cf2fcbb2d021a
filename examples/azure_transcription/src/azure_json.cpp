#include "azure_json.hpp"

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <utility>

#include "json_numbers.hpp"

namespace procpool::azure::detail {

namespace {

std::string json_text(const nlohmann::json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_null()) return {};
  return v.dump();
}

std::int64_t ticks(const nlohmann::json& j, const char* name) {
  if (!j.contains(name)) return 0;
  const auto& v = j[name];
  if (v.is_number()) return checked_integer<std::int64_t>(v, Floats::truncate).value_or(0);
  if (v.is_string()) {  // the docs show "Offset": "1800000"
    const std::string s = v.get<std::string>();
    std::int64_t out = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    if (ec == std::errc() && end == s.data() + s.size()) return out;
  }
  throw nlohmann::json::type_error::create(302, std::string(name) + " is not a number", &j);
}

std::string fast_profanity(Profanity p) {
  switch (p) {
    case Profanity::masked:
      return "Masked";
    case Profanity::removed:
      return "Removed";
    case Profanity::raw:
      return "None";
    case Profanity::tags:
      return "Tags";
  }
  return "Masked";
}

}  // namespace

ErrorBody parse_error_body(const std::string& body) {
  ErrorBody e;
  auto j = nlohmann::json::parse(body, nullptr, false);
  if (!j.is_discarded() && j.is_object()) {
    const nlohmann::json* src = &j;
    if (j.contains("error") && j["error"].is_object()) src = &j["error"];
    if (src->contains("code")) e.code = json_text((*src)["code"]);
    if (src->contains("message")) e.message = json_text((*src)["message"]);
    if (e.message.empty() && src->contains("Message")) e.message = json_text((*src)["Message"]);
  }
  if (e.message.empty() && !body.empty()) e.message = body.substr(0, 300);
  return e;
}

void parse_short_audio(const std::string& body, TranscribeResponse& out) {
  auto j = nlohmann::json::parse(body);
  out.status = j.at("RecognitionStatus").get<std::string>();
  out.offset_ticks = ticks(j, "Offset");
  out.duration_ticks = ticks(j, "Duration");
  if (j.contains("NBest") && j["NBest"].is_array()) {
    for (const auto& n : j["NBest"]) {
      NBestEntry e;
      e.confidence = n.value("Confidence", 0.0);
      e.lexical = n.value("Lexical", "");
      e.itn = n.value("ITN", "");
      e.masked_itn = n.value("MaskedITN", "");
      e.display = n.value("Display", "");
      out.nbest.push_back(std::move(e));
    }
  }
  out.display_text = j.value("DisplayText", "");
  if (out.display_text.empty() && !out.nbest.empty()) out.display_text = out.nbest[0].display;
}

void parse_fast(const std::string& body, TranscribeResponse& out) {
  auto j = nlohmann::json::parse(body);
  out.audio_duration_ms = integer_or<std::int64_t>(j, "durationMilliseconds", 0);
  std::string combined;
  if (j.contains("combinedPhrases")) {
    for (const auto& c : j.at("combinedPhrases")) {
      std::string t = c.value("text", "");
      if (t.empty()) continue;
      if (!combined.empty()) combined += ' ';
      combined += t;
    }
  }
  if (j.contains("phrases")) {
    for (const auto& p : j.at("phrases")) {
      Phrase phrase;
      phrase.text = p.value("text", "");
      phrase.offset_ms = integer_or<std::int64_t>(p, "offsetMilliseconds", 0);
      phrase.duration_ms = integer_or<std::int64_t>(p, "durationMilliseconds", 0);
      phrase.locale = p.value("locale", "");
      phrase.confidence = p.value("confidence", 0.0);
      if (p.contains("speaker")) phrase.speaker = checked_integer<int>(p["speaker"]);
      if (p.contains("channel")) phrase.channel = checked_integer<int>(p["channel"]);
      if (p.contains("words")) {
        for (const auto& w : p["words"]) {
          phrase.words.push_back({w.value("text", ""),
                                  integer_or<std::int64_t>(w, "offsetMilliseconds", 0),
                                  integer_or<std::int64_t>(w, "durationMilliseconds", 0)});
        }
      }
      out.phrases.push_back(std::move(phrase));
    }
  }
  out.display_text = combined;
  if (out.phrases.empty()) {
    out.status = "NoMatch";
  } else {
    out.status = "Success";
    std::int64_t first = out.phrases.front().offset_ms;
    std::int64_t last = first;
    for (const auto& p : out.phrases)
      last = std::max(last, p.offset_ms + p.duration_ms);
    out.offset_ticks = first * 10'000;
    out.duration_ticks = (last - first) * 10'000;
  }
}

std::string fast_definition(const TranscribeRequest& request) {
  nlohmann::json definition = nlohmann::json::object();
  if (!request.locales.empty()) definition["locales"] = request.locales;
  definition["profanityFilterMode"] = fast_profanity(request.profanity);
  if (request.diarization) {
    definition["diarization"] = {{"enabled", true}, {"maxSpeakers", request.max_speakers}};
  }
  if (!request.channels.empty()) definition["channels"] = request.channels;
  return definition.dump();
}

}  // namespace procpool::azure::detail
