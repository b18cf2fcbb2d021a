#include "request_parsing.hpp"

#include <charconv>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "http_errors.hpp"
#include "json_numbers.hpp"
#include "text.hpp"

namespace procpool::azure::detail {

namespace {

using json = nlohmann::json;

std::vector<std::string> split_commas(const std::string& text) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= text.size()) {
    std::size_t comma = text.find(',', start);
    if (comma == std::string::npos) comma = text.size();
    std::string item = trim(std::string_view(text).substr(start, comma - start));
    if (!item.empty()) out.push_back(item);
    start = comma + 1;
  }
  return out;
}

bool parse_bool(const std::string& name, const std::string& v) {
  std::string l = lower(v);
  if (l == "true" || l == "1" || l == "yes" || l.empty()) return true;
  if (l == "false" || l == "0" || l == "no") return false;
  throw bad_request("InvalidQueryParameter",
                    "parameter \"" + name + "\": expected true or false, got \"" + v + "\"");
}

int parse_int(const std::string& name, const std::string& v, int lo, int hi) {
  int x = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), x);
  if (v.empty() || ec != std::errc{} || p != v.data() + v.size() || x < lo || x > hi) {
    throw bad_request("InvalidQueryParameter", "parameter \"" + name + "\": expected an integer " +
                                                   std::to_string(lo) + ".." + std::to_string(hi) +
                                                   ", got \"" + v + "\"");
  }
  return x;
}

// Query parameters shared by both request forms.
void apply_query(const httplib::Request& req, TranscribeRequest& r) {
  std::vector<std::string> locales;
  bool locale_given = false;
  for (const auto& [name, value] : req.params) {
    if (name == "locale" || name == "language" || name == "locales") {
      locale_given = true;
      if (lower(value) == "auto") continue;  // language detection (fast transcription)
      for (auto& l : split_commas(value))
        locales.push_back(l);
    } else if (name == "format") {
      auto f = parse_output_format(lower(value));
      if (!f) {
        throw bad_request(
            "InvalidQueryParameter",
            "parameter \"format\": expected simple or detailed, got \"" + value + "\"");
      }
      r.format = *f;
    } else if (name == "profanity") {
      auto p = parse_profanity(lower(value));
      if (!p) {
        throw bad_request("InvalidQueryParameter",
                          "parameter \"profanity\": expected masked, removed, raw or tags, got \"" +
                              value + "\"");
      }
      r.profanity = *p;
    } else if (name == "api") {
      std::string l = lower(value);
      if (l == "automatic") l = "auto";
      if (l == "short_audio") l = "short";
      auto a = parse_api(l);
      if (!a) {
        throw bad_request("InvalidQueryParameter",
                          "parameter \"api\": expected auto, short or fast, got \"" + value + "\"");
      }
      r.api = *a;
    } else if (name == "diarization") {
      r.diarization = parse_bool(name, value);
    } else if (name == "max_speakers") {
      r.max_speakers = parse_int(name, value, 1, 36);
    } else if (name == "channels") {
      r.channels.clear();
      for (auto& c : split_commas(value))
        r.channels.push_back(parse_int(name, c, 0, 64));
    } else if (name == "timeout_ms") {
      r.total_timeout = std::chrono::milliseconds(parse_int(name, value, 1, 24 * 3600 * 1000));
    } else {
      throw bad_request("InvalidQueryParameter",
                        "unknown query parameter \"" + name +
                            "\"; known: locale, format, profanity, api, diarization, "
                            "max_speakers, channels, timeout_ms");
    }
  }
  if (locale_given) r.locales = std::move(locales);
}

// Fast transcription's `definition` JSON (the subset the adapter supports).
void apply_definition(const std::string& text, TranscribeRequest& r) {
  json d;
  try {
    d = json::parse(text);
  } catch (const json::exception& e) {
    throw bad_request("InvalidDefinition",
                      std::string("the definition part is not valid JSON: ") + e.what());
  }
  if (!d.is_object())
    throw bad_request("InvalidDefinition", "the definition must be a JSON object");
  try {
    if (d.contains("locales")) {
      r.locales = d.at("locales").get<std::vector<std::string>>();
    }
    if (d.contains("profanityFilterMode")) {
      std::string mode = lower(d.at("profanityFilterMode").get<std::string>());
      if (mode == "none") mode = "raw";
      auto p = parse_profanity(mode);
      if (!p) {
        throw bad_request("InvalidDefinition",
                          "definition.profanityFilterMode: expected None, Masked, Removed or Tags");
      }
      r.profanity = *p;
    }
    const json* diar = nullptr;
    if (d.contains("diarization")) diar = &d.at("diarization");
    if (d.contains("diarizationSettings")) diar = &d.at("diarizationSettings");
    if (diar != nullptr) {
      if (!diar->is_object()) {
        throw bad_request("InvalidDefinition", "definition.diarization must be an object");
      }
      r.diarization = diar->value("enabled", true);
      if (diar->contains("maxSpeakers")) {
        auto speakers = checked_integer<int>(diar->at("maxSpeakers"));
        if (!speakers) {
          throw bad_request("InvalidDefinition",
                            "definition.diarization.maxSpeakers must be an integer");
        }
        r.max_speakers = *speakers;
      }
    }
    if (d.contains("channels")) {
      const json& channels = d.at("channels");
      if (!channels.is_array()) {
        throw bad_request("InvalidDefinition", "definition.channels must be an array of integers");
      }
      for (const json& channel : channels) {
        auto number = checked_integer<int>(channel);
        if (!number) {
          throw bad_request("InvalidDefinition",
                            "definition.channels must be an array of integers");
        }
        r.channels.push_back(*number);
      }
    }
  } catch (const json::exception& e) {
    throw bad_request("InvalidDefinition", std::string("the definition has a field of the wrong "
                                                       "type: ") +
                                               e.what());
  }
}

std::string guess_content_type(const std::string& declared, const std::string& filename) {
  std::string type = lower(trim(declared));
  if (!type.empty() && type != "application/octet-stream") return trim(declared);
  std::string name = lower(filename);
  auto ends = [&](std::string_view ext) {
    return name.size() >= ext.size() &&
           name.compare(name.size() - ext.size(), ext.size(), ext) == 0;
  };
  if (ends(".ogg") || ends(".opus")) return "audio/ogg; codecs=opus";
  if (ends(".mp3")) return "audio/mpeg";
  if (ends(".flac")) return "audio/flac";
  if (ends(".webm")) return "audio/webm";
  if (ends(".aac")) return "audio/aac";
  if (ends(".amr")) return "audio/amr";
  if (ends(".wma")) return "audio/x-ms-wma";
  return "audio/wav";
}

}  // namespace

TranscribeRequest parse_request(const httplib::Request& req) {
  TranscribeRequest r;
  if (req.is_multipart_form_data()) {
    if (!req.has_file("audio")) {
      throw bad_request("MissingAudio", "the multipart form has no \"audio\" part");
    }
    httplib::MultipartFormData audio = req.get_file_value("audio");
    if (audio.content.empty()) throw bad_request("EmptyAudio", "the \"audio\" part is empty");
    apply_query(req, r);
    if (req.has_file("definition")) apply_definition(req.get_file_value("definition").content, r);
    for (const auto& [name, part] : req.files) {
      if (name != "audio" && name != "definition") {
        throw bad_request("UnknownFormPart",
                          "unknown form part \"" + name + "\"; expected audio and definition");
      }
    }
    r.content_type = guess_content_type(audio.content_type, audio.filename);
    const auto* p = reinterpret_cast<const std::byte*>(audio.content.data());
    r.audio.assign(p, p + audio.content.size());
  } else {
    if (req.body.empty()) {
      throw bad_request("EmptyAudio",
                        "the request has no audio: send it as the body (Content-Type audio/wav, "
                        "...) or as the \"audio\" part of a multipart form");
    }
    std::string type = req.get_header_value("Content-Type");
    std::string media = media_type(type);
    if (media.rfind("multipart/", 0) == 0 || media == "application/json" ||
        media == "application/x-www-form-urlencoded" || media.rfind("text/", 0) == 0) {
      throw bad_request("UnsupportedMediaType",
                        "Content-Type \"" + type +
                            "\" is not audio; send audio/wav, audio/ogg; codecs=opus, ... or "
                            "multipart/form-data",
                        415);
    }
    apply_query(req, r);
    r.content_type = guess_content_type(type, "");
    const auto* p = reinterpret_cast<const std::byte*>(req.body.data());
    r.audio.assign(p, p + req.body.size());
  }
  return r;
}

}  // namespace procpool::azure::detail
