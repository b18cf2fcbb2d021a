// libFuzzer target: the typed-job codecs, decoding bytes nobody vouches for.
//
// The host decodes what a worker sends back (a Response) and a worker decodes what it is given (a
// Request); a worker can be corrupt, so every decoder must either return a value or throw
// procpool::CodecError, never crash, hang or throw anything else. When decoding succeeds, the value
// must survive a round trip: encode(decode(bytes)) decodes again to a value that encodes to the
// same bytes (and for the codecs that copy bytes verbatim, to the input itself).
//
// Input: one byte choosing the codec, then the bytes to decode.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <procpool/codec.hpp>
#include <span>
#include <string>

#ifdef PROCPOOL_FUZZ_AZURE
#include "azure_transcription/job.hpp"
#endif

namespace {

/// A trivially copyable request without padding, so its bytes are all value bytes.
struct Trivial {
  std::int64_t id;
  double weight;
  std::uint32_t flags;
  float ratio;
};
static_assert(sizeof(Trivial) == 24);

[[noreturn]] void fail(const char* codec, const char* what) {
  std::fprintf(stderr, "fuzz_codecs: %s: %s\n", codec, what);
  std::abort();
}

/// Decodes `bytes` as a T; on success checks the round trip. `verbatim`: the codec's encoding of
/// a decoded value is the input itself.
template <class T>
void round_trip(const char* codec, std::span<const std::byte> bytes, bool verbatim) {
  T value;
  try {
    value = procpool::Codec<T>::decode(bytes);
  } catch (const procpool::CodecError&) {
    return;  // rejected with the codec's own error: the outcome the caller handles
  }
  procpool::Bytes once = procpool::Codec<T>::encode(value);
  if (verbatim && !std::equal(once.begin(), once.end(), bytes.begin(), bytes.end())) {
    fail(codec, "encode(decode(bytes)) != bytes");
  }
  T again;
  try {
    again = procpool::Codec<T>::decode(once);
  } catch (const procpool::CodecError& e) {
    std::fprintf(stderr, "fuzz_codecs: %s: %s\n", codec, e.what());
    fail(codec, "a value it decoded and re-encoded no longer decodes");
  }
  if (procpool::Codec<T>::encode(again) != once) {
    fail(codec, "decode(encode(value)) encodes differently from value");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data) + 1, size - 1);
  switch (data[0] % 5) {
    case 0:
      round_trip<procpool::Bytes>("Bytes", bytes, true);
      break;
    case 1:
      round_trip<std::string>("std::string", bytes, true);
      break;
    case 2:
      round_trip<Trivial>("trivially copyable", bytes, true);
      break;
#ifdef PROCPOOL_FUZZ_AZURE
    case 3:
      round_trip<procpool::azure::TranscribeRequest>("azure TranscribeRequest", bytes, false);
      break;
    case 4:
      round_trip<procpool::azure::TranscribeResponse>("azure TranscribeResponse", bytes, false);
      break;
#endif
    default:
      break;
  }
  return 0;
}
