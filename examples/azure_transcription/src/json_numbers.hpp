// Reading integers out of JSON that procpool's Azure example does not control (Azure's responses,
// HTTP clients' requests, and what a worker sends back to the host).
//
// nlohmann's get<int>() of a number outside int's range, or of a float such as 1e300, is a
// float-to-integer conversion with undefined behaviour. Every integer read from such JSON goes
// through these instead.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <utility>

namespace procpool::azure::detail {

/// How a JSON float is treated where an integer is expected.
enum class Floats {
  reject,    ///< only JSON integers are accepted
  truncate,  ///< a finite float within range is truncated toward zero
};

/// `value` as T if it is a JSON integer within T's range (or, with Floats::truncate, a finite
/// float within it); nullopt otherwise.
template <class T>
std::optional<T> checked_integer(const nlohmann::json& value, Floats floats = Floats::reject) {
  if (value.is_number_unsigned()) {
    auto v = value.get<std::uint64_t>();
    if (std::in_range<T>(v)) return static_cast<T>(v);
  } else if (value.is_number_integer()) {
    auto v = value.get<std::int64_t>();
    if (std::in_range<T>(v)) return static_cast<T>(v);
  } else if (value.is_number_float() && floats == Floats::truncate) {
    double v = std::trunc(value.get<double>());
    // max + 1 is a power of two, exact as a double; min - 1 rounds at most up to min for 64-bit
    // types, which only rejects min itself: no out-of-range value gets through.
    constexpr double below = static_cast<double>(std::numeric_limits<T>::min()) - 1.0;
    constexpr double above = static_cast<double>(std::numeric_limits<T>::max()) + 1.0;
    if (std::isfinite(v) && v > below && v < above) return static_cast<T>(v);
  }
  return std::nullopt;
}

/// The integer member `name` of `object`, or `fallback` if it is missing or not an integer in
/// range.
template <class T>
T integer_or(const nlohmann::json& object, const char* name, T fallback,
             Floats floats = Floats::reject) {
  auto it = object.find(name);
  if (it == object.end()) return fallback;
  return checked_integer<T>(*it, floats).value_or(fallback);
}

}  // namespace procpool::azure::detail
