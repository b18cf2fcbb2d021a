// Reading a transcription request: the audio (a raw body or a multipart form), the query
// parameters, and fast transcription's `definition` part.
#pragma once

#include <httplib.h>

#include "azure_transcription/types.hpp"

namespace procpool::azure::detail {

/// The TranscribeRequest `req` asks for. Throws HttpError (400, or 415 for a body that is not
/// audio) naming what is wrong: no or empty audio, an unknown form part or query parameter, a bad
/// value, a definition that is not valid JSON or has a field of the wrong type.
TranscribeRequest parse_request(const httplib::Request& req);

}  // namespace procpool::azure::detail
