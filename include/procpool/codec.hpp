// Codecs and typed jobs: turn requests and responses into bytes and back.
#pragma once

#include <concepts>
#include <cstring>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>

#include "procpool/result.hpp"

namespace procpool {

/// Thrown by a codec's decode() when the bytes are not a valid encoding. Inside a worker it makes
/// the job fail with ErrorKind::codec_error; in the host, Future::get() turns it into the same
/// kind.
class CodecError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Encodes a T to bytes and decodes it back. Specialise it for your own types:
///
///   template <> struct procpool::Codec<MyRequest> {
///     static procpool::Bytes encode(const MyRequest&);
///     static MyRequest decode(std::span<const std::byte>);  // throws CodecError on bad input
///   };
///
/// Provided: Bytes, std::string, and trivially copyable types (copied as their object
/// representation: host and worker must be the same build for the same ABI, which a self-exec'd
/// worker is unless the binary on disk was replaced after the Pool was constructed).
template <class T, class Enable = void>
struct Codec;

/// Raw bytes pass through unchanged.
template <>
struct Codec<Bytes> {
  /// Returns a copy of `value`. Throws only std::bad_alloc.
  static Bytes encode(const Bytes& value) { return value; }
  /// Returns a copy of `bytes`. Throws only std::bad_alloc.
  static Bytes decode(std::span<const std::byte> bytes) {
    return Bytes(bytes.begin(), bytes.end());
  }
};

/// A string travels as its characters, without a terminator; any byte sequence decodes.
template <>
struct Codec<std::string> {
  /// The characters of `value`. Throws only std::bad_alloc.
  static Bytes encode(const std::string& value) {
    const auto* first = reinterpret_cast<const std::byte*>(value.data());
    return Bytes(first, first + value.size());
  }
  /// A string holding exactly `bytes`. Throws only std::bad_alloc.
  static std::string decode(std::span<const std::byte> bytes) {
    return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  }
};

/// A trivially copyable, non-pointer type travels as its object representation (sizeof(T) bytes).
template <class T>
struct Codec<T, std::enable_if_t<std::is_trivially_copyable_v<T> && !std::is_pointer_v<T>>> {
  /// The sizeof(T) bytes of `value`. Throws only std::bad_alloc.
  static Bytes encode(const T& value) {
    Bytes out(sizeof(T));
    std::memcpy(out.data(), &value, sizeof(T));
    return out;
  }
  /// The T whose bytes are `bytes`. Throws CodecError if there are not exactly sizeof(T) of them.
  static T decode(std::span<const std::byte> bytes) {
    if (bytes.size() != sizeof(T)) {
      throw CodecError("expected " + std::to_string(sizeof(T)) + " bytes, got " +
                       std::to_string(bytes.size()));
    }
    T value;
    std::memcpy(&value, bytes.data(), sizeof(T));
    return value;
  }
};

/// A type that has a usable Codec.
template <class T>
concept Encodable = requires(const T& value, std::span<const std::byte> bytes) {
  { Codec<T>::encode(value) } -> std::same_as<Bytes>;
  { Codec<T>::decode(bytes) } -> std::same_as<T>;
};

/// A typed job: a name, a Request and a Response type, both Encodable.
///
///   struct Resize {
///     static constexpr std::string_view name = "image.resize";
///     using Request = ResizeRequest;
///     using Response = ResizeResponse;
///   };
///
/// Register its handler with JobRegistry::add<Resize>(...) and submit with
/// Pool::submit<Resize>(...).
template <class J>
concept TypedJob = requires {
  { J::name } -> std::convertible_to<std::string_view>;
  typename J::Request;
  typename J::Response;
}
&&Encodable<typename J::Request>&& Encodable<typename J::Response>;

}  // namespace procpool
