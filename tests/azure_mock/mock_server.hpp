// A loopback mock of Azure AI Speech (short audio, fast transcription, issueToken) for tests.
// Follows /work/shared/azure/CONTRACT.md: real paths, query and header checks, status codes and
// both error body shapes, deterministic transcripts, and faults scripted from the test.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace procpool::azure_mock {

enum class Endpoint { short_audio, fast, token, any };

/// One scripted misbehaviour, applied to the next request for its endpoint (FIFO).
struct Fault {
  enum class Kind {
    status,             // answer `status` (with Retry-After if set) and an error body
    slow,               // wait `delay`, then answer normally
    drop,               // send the status line and headers, then close the connection
    recognition_error,  // short audio: 200 with RecognitionStatus "Error"
    echo_key,           // a 400 whose message quotes the subscription key back (a leaky server)
  };
  Kind kind = Kind::status;
  int status = 500;
  std::optional<int> retry_after_seconds;
  std::chrono::milliseconds delay{0};

  static Fault http(int status, std::optional<int> retry_after_seconds = std::nullopt);
  static Fault slow(std::chrono::milliseconds delay);
  static Fault drop();
  static Fault recognition_error();
  static Fault echo_key();
};

struct MockOptions {
  std::string key = "mock-subscription-key-0123456789";
  /// Status for a request with no credentials at all (sources say 401 or 403).
  int missing_auth_status = 401;
  std::vector<std::string> api_versions = {"2024-11-15", "2025-10-15"};
  std::chrono::milliseconds token_lifetime{10 * 60'000};
  std::size_t threads = 16;
};

/// What the mock saw of one request.
struct RequestRecord {
  Endpoint endpoint = Endpoint::any;
  std::string path;
  std::map<std::string, std::string> query;
  int status = 0;                // -1 for a dropped connection
  std::string auth;              // "key", "bearer" or "none"
  bool chunked = false;          // Transfer-Encoding: chunked
  bool expect_continue = false;  // Expect: 100-continue
  std::string content_type;
  std::size_t body_bytes = 0;
  std::string definition;  // fast transcription's definition field
};

struct Counters {
  std::uint64_t total = 0;
  std::uint64_t short_audio = 0;
  std::uint64_t fast = 0;
  std::uint64_t token = 0;
  std::uint64_t other = 0;
  std::uint64_t chunked = 0;
  std::uint64_t expect_continue = 0;
  std::uint64_t faults_applied = 0;
  std::uint64_t tokens_issued = 0;
  std::map<int, std::uint64_t> by_status;
};

class MockServer {
 public:
  /// Binds 127.0.0.1 on a port the OS chooses and serves on a background thread at once.
  explicit MockServer(MockOptions options = {});
  ~MockServer();
  MockServer(const MockServer&) = delete;
  MockServer& operator=(const MockServer&) = delete;

  int port() const noexcept;
  /// http://127.0.0.1:PORT
  std::string base_url() const;
  const MockOptions& options() const noexcept;

  void push_fault(Endpoint endpoint, Fault fault);
  std::size_t pending_faults() const;
  /// Every token issued so far is rejected with 401 from now on.
  void revoke_tokens();

  Counters counters() const;
  std::vector<RequestRecord> requests() const;

  /// Stops serving (also done by the destructor); wakes slow faults.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// The transcript the mock returns for `audio` (a WAV's samples or any other file's bytes): a
/// few words per 5 s of audio, chosen by a hash of the content. Empty for digital silence.
std::vector<std::string> expected_phrases(std::span<const std::byte> audio);
std::string expected_text(std::span<const std::byte> audio);

}  // namespace procpool::azure_mock
