// Text helpers the adapter and the server share: header values, query parameters, media types.
#pragma once

#include <string>
#include <string_view>

namespace procpool::azure::detail {

/// `s` in ASCII lower case.
std::string lower(std::string_view s);

/// `s` without leading and trailing white space (std::isspace).
std::string trim(std::string_view s);

/// The media type of a Content-Type, lower case, without its parameters: "Audio/WAV;
/// codecs=audio/pcm" -> "audio/wav".
std::string media_type(std::string_view content_type);

}  // namespace procpool::azure::detail
