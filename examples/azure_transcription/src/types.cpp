#include "azure_transcription/types.hpp"

#include <array>
#include <nlohmann/json.hpp>
#include <utility>

namespace procpool::azure {

namespace {

template <class E, std::size_t N>
std::optional<E> lookup(const std::array<std::pair<E, std::string_view>, N>& table,
                        std::string_view text) noexcept {
  for (const auto& [value, name] : table)
    if (name == text) return value;
  return std::nullopt;
}

template <class E, std::size_t N>
std::string_view name_of(const std::array<std::pair<E, std::string_view>, N>& table,
                         E value) noexcept {
  for (const auto& [v, name] : table)
    if (v == value) return name;
  return "unknown";
}

constexpr std::array<std::pair<Api, std::string_view>, 3> api_names{
    {{Api::automatic, "auto"}, {Api::short_audio, "short"}, {Api::fast, "fast"}}};
constexpr std::array<std::pair<OutputFormat, std::string_view>, 2> format_names{
    {{OutputFormat::simple, "simple"}, {OutputFormat::detailed, "detailed"}}};
constexpr std::array<std::pair<Profanity, std::string_view>, 4> profanity_names{
    {{Profanity::masked, "masked"},
     {Profanity::removed, "removed"},
     {Profanity::raw, "raw"},
     {Profanity::tags, "tags"}}};
constexpr std::array<std::pair<ErrorKind, std::string_view>, 10> kind_names{{
    {ErrorKind::invalid_audio, "invalid_audio"},
    {ErrorKind::invalid_request, "invalid_request"},
    {ErrorKind::configuration, "configuration"},
    {ErrorKind::authentication, "authentication"},
    {ErrorKind::bad_request, "bad_request"},
    {ErrorKind::throttled, "throttled"},
    {ErrorKind::service_error, "service_error"},
    {ErrorKind::timeout, "timeout"},
    {ErrorKind::connection, "connection"},
    {ErrorKind::bad_response, "bad_response"},
}};

std::string render(const AzureError::Details& d) {
  nlohmann::json j = {{"azure_error", to_string(d.kind)}, {"message", d.message},
                      {"http_status", d.http_status},     {"code", d.code},
                      {"request_id", d.request_id},       {"attempts", d.attempts},
                      {"retryable", d.retryable}};
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace

std::string_view to_string(Api api) noexcept {
  return name_of(api_names, api);
}
std::string_view to_string(OutputFormat format) noexcept {
  return name_of(format_names, format);
}
std::string_view to_string(Profanity profanity) noexcept {
  return name_of(profanity_names, profanity);
}
std::string_view to_string(ErrorKind kind) noexcept {
  return name_of(kind_names, kind);
}
std::optional<Api> parse_api(std::string_view text) noexcept {
  return lookup(api_names, text);
}
std::optional<OutputFormat> parse_output_format(std::string_view text) noexcept {
  return lookup(format_names, text);
}
std::optional<Profanity> parse_profanity(std::string_view text) noexcept {
  return lookup(profanity_names, text);
}
std::optional<ErrorKind> parse_error_kind(std::string_view text) noexcept {
  return lookup(kind_names, text);
}

AzureError::AzureError(Details details)
    : std::runtime_error(render(details)), details_(std::move(details)) {}

std::optional<AzureError::Details> AzureError::from_message(std::string_view message) {
  auto j = nlohmann::json::parse(message, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("azure_error")) return std::nullopt;
  try {
    Details d;
    auto kind = parse_error_kind(j.at("azure_error").get<std::string>());
    if (!kind) return std::nullopt;
    d.kind = *kind;
    d.message = j.value("message", "");
    d.http_status = j.value("http_status", 0);
    d.code = j.value("code", "");
    d.request_id = j.value("request_id", "");
    d.attempts = j.value("attempts", 0u);
    d.retryable = j.value("retryable", false);
    return d;
  } catch (const nlohmann::json::exception&) {
    return std::nullopt;
  }
}

}  // namespace procpool::azure
