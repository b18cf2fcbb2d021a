#include "http_exchange.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstring>
#include <mutex>
#include <new>

#include "azure_json.hpp"
#include "azure_transcription/client.hpp"
#include "text.hpp"

namespace procpool::azure::detail {

namespace {

using std::chrono::milliseconds;

constexpr std::size_t max_response_bytes = std::size_t{64} << 20;

std::string host_of(const std::string& url) {
  std::string origin = origin_of(url);
  auto scheme_end = origin.find("://");
  return scheme_end == std::string::npos ? origin : origin.substr(scheme_end + 3);
}

struct Upload {
  std::span<const std::byte> data;
  std::size_t position = 0;
};

std::size_t read_upload(char* buffer, std::size_t size, std::size_t count, void* user) {
  auto* up = static_cast<Upload*>(user);
  std::size_t n = std::min(size * count, up->data.size() - up->position);
  std::memcpy(buffer, up->data.data() + up->position, n);
  up->position += n;
  return n;
}

int seek_upload(void* user, curl_off_t offset, int origin) {
  auto* up = static_cast<Upload*>(user);
  if (origin != SEEK_SET || offset < 0 || static_cast<std::size_t>(offset) > up->data.size()) {
    return CURL_SEEKFUNC_CANTSEEK;
  }
  up->position = static_cast<std::size_t>(offset);
  return CURL_SEEKFUNC_OK;
}

std::size_t write_body(char* data, std::size_t size, std::size_t count, void* user) {
  auto* in = static_cast<Incoming*>(user);
  std::size_t n = size * count;
  if (in->body.size() + n > max_response_bytes) {
    in->body_truncated = true;
    return 0;  // aborts the transfer
  }
  in->body.append(data, n);
  return n;
}

std::size_t write_header(char* data, std::size_t size, std::size_t count, void* user) {
  auto* in = static_cast<Incoming*>(user);
  std::string_view line(data, size * count);
  if (line.starts_with("HTTP/")) {
    in->headers.clear();  // a new response block (e.g. after 100 Continue)
  } else if (auto colon = line.find(':'); colon != std::string_view::npos) {
    in->headers[lower(trim(line.substr(0, colon)))] = trim(line.substr(colon + 1));
  }
  return size * count;
}

struct Slist {
  curl_slist* list = nullptr;
  ~Slist() { curl_slist_free_all(list); }
  void add(const std::string& line) {
    curl_slist* next = curl_slist_append(list, line.c_str());
    if (next == nullptr) throw std::bad_alloc();
    list = next;
  }
};

struct Mime {
  curl_mime* mime = nullptr;
  ~Mime() { curl_mime_free(mime); }
};

}  // namespace

HandleCache::~HandleCache() {
  for (auto& h : handles_)
    curl_easy_cleanup(h.handle);
}

CURL* HandleCache::acquire(const std::string& origin) {
  ++tick_;
  for (auto& h : handles_) {
    if (h.origin == origin) {
      h.last_used = tick_;
      curl_easy_reset(h.handle);
      return h.handle;
    }
  }
  if (handles_.size() >= capacity_) {
    auto oldest = std::min_element(
        handles_.begin(), handles_.end(),
        [](const CachedHandle& a, const CachedHandle& b) { return a.last_used < b.last_used; });
    curl_easy_cleanup(oldest->handle);
    handles_.erase(oldest);
    ++evicted_;
  }
  CURL* handle = curl_easy_init();
  if (handle == nullptr) {
    throw AzureError(AzureError::make(ErrorKind::connection, "curl_easy_init failed"));
  }
  ++created_;
  handles_.push_back({handle, origin, tick_});
  return handle;
}

void init_curl_once() {
  static std::once_flag flag;
  std::call_once(flag, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

Incoming perform(HandleCache& cache, const AzureConfig& config, const Outgoing& out,
                 milliseconds timeout) {
  CURL* h = cache.acquire(origin_of(out.url));
  Incoming in;
  char errbuf[CURL_ERROR_SIZE] = {};
  Slist headers;
  for (const auto& line : out.headers)
    headers.add(line);
  Upload upload{out.raw, 0};
  Mime mime;

  curl_easy_setopt(h, CURLOPT_URL, out.url.c_str());
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, config.allow_http ? "http,https" : "https");
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS,
                   static_cast<long>(std::max<long long>(1, timeout.count())));
  curl_easy_setopt(
      h, CURLOPT_CONNECTTIMEOUT_MS,
      static_cast<long>(std::max<long long>(1, std::min(timeout, config.connect_timeout).count())));
  curl_easy_setopt(h, CURLOPT_EXPECT_100_TIMEOUT_MS,
                   static_cast<long>(config.expect_continue_timeout.count()));
  curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_body);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &in);
  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, write_header);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, &in);
  curl_easy_setopt(h, CURLOPT_POST, 1L);

  std::size_t body_bytes = 0;
  if (out.empty_post) {
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t{0});
  } else if (out.multipart) {
    mime.mime = curl_mime_init(h);
    curl_mimepart* audio = curl_mime_addpart(mime.mime);
    curl_mime_name(audio, "audio");
    curl_mime_data_cb(audio, static_cast<curl_off_t>(out.raw.size()), read_upload, seek_upload,
                      nullptr, &upload);
    curl_mime_filename(audio, "audio");
    curl_mime_type(audio, out.audio_content_type.c_str());
    curl_mimepart* definition = curl_mime_addpart(mime.mime);
    curl_mime_name(definition, "definition");
    curl_mime_data(definition, out.definition.c_str(), CURL_ZERO_TERMINATED);
    curl_easy_setopt(h, CURLOPT_MIMEPOST, mime.mime);
    body_bytes = out.raw.size() + out.definition.size();
  } else {
    curl_easy_setopt(h, CURLOPT_READFUNCTION, read_upload);
    curl_easy_setopt(h, CURLOPT_READDATA, &upload);
    curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, seek_upload);
    curl_easy_setopt(h, CURLOPT_SEEKDATA, &upload);
    if (out.chunked) {
      headers.add("Transfer-Encoding: chunked");
    } else {
      curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(out.raw.size()));
    }
    body_bytes = out.raw.size();
  }
  // Expect: 100-continue only when it saves something (big bodies) or for chunked uploads.
  if (out.chunked || body_bytes >= config.expect_continue_min_bytes) {
    headers.add("Expect: 100-continue");
  } else {
    headers.add("Expect:");
  }
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers.list);

  in.curl = curl_easy_perform(h);
  if (in.curl != CURLE_OK) {
    in.curl_error = errbuf[0] != '\0' ? errbuf : curl_easy_strerror(in.curl);
  }
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &in.status);
  // The handle must not keep pointers into this frame.
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, nullptr);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, nullptr);
  curl_easy_setopt(h, CURLOPT_MIMEPOST, nullptr);
  return in;
}

AzureError::Details failure_from(const Incoming& in, const std::string& what,
                                 const std::string& url) {
  AzureError::Details d;
  d.request_id = request_id_of(in);
  if (in.curl != CURLE_OK && in.status == 0) {
    d.retryable = true;
    switch (in.curl) {
      case CURLE_OPERATION_TIMEDOUT:
        d.kind = ErrorKind::timeout;
        break;
      case CURLE_COULDNT_RESOLVE_HOST:
      case CURLE_COULDNT_CONNECT:
      case CURLE_SEND_ERROR:
      case CURLE_RECV_ERROR:
      case CURLE_GOT_NOTHING:
      case CURLE_PARTIAL_FILE:
      case CURLE_SSL_CONNECT_ERROR:
        d.kind = ErrorKind::connection;
        break;
      default:
        d.kind = ErrorKind::connection;
        d.retryable = false;
    }
    d.message = what + ": " + (d.kind == ErrorKind::timeout ? "timed out" : "connection failed") +
                " talking to " + host_of(url) + " (curl " +
                std::to_string(static_cast<int>(in.curl)) + ": " + in.curl_error + ")";
    return d;
  }
  if (in.curl != CURLE_OK) {
    // Got a status line, then the connection broke (dropped mid-response).
    d.kind = ErrorKind::connection;
    d.retryable = true;
    d.http_status = static_cast<int>(in.status);
    d.message = what + ": the connection to " + host_of(url) + " broke during the response (curl " +
                std::to_string(static_cast<int>(in.curl)) + ": " + in.curl_error + ")";
    return d;
  }
  ErrorBody body = parse_error_body(in.body);
  d.http_status = static_cast<int>(in.status);
  d.code = body.code;
  d.retryable = is_retryable_status(d.http_status);
  if (d.http_status == 401 || d.http_status == 403) {
    d.kind = ErrorKind::authentication;
  } else if (d.http_status == 408) {
    d.kind = ErrorKind::timeout;
  } else if (d.http_status == 429) {
    d.kind = ErrorKind::throttled;
  } else if (d.http_status >= 500) {
    d.kind = ErrorKind::service_error;
  } else {
    d.kind = ErrorKind::bad_request;
  }
  d.message = what + ": HTTP " + std::to_string(d.http_status) +
              (body.code.empty() ? "" : " " + body.code) +
              (body.message.empty() ? "" : ": " + body.message);
  return d;
}

std::string request_id_of(const Incoming& in) {
  for (const char* name : {"apim-request-id", "x-requestid", "x-ms-request-id", "request-id"}) {
    if (auto it = in.headers.find(name); it != in.headers.end()) return it->second;
  }
  return {};
}

std::optional<milliseconds> retry_after(const Incoming& in) {
  auto it = in.headers.find("retry-after");
  if (it == in.headers.end()) return std::nullopt;
  std::int64_t seconds = 0;
  const std::string& s = it->second;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), seconds);
  if (ec != std::errc() || end != s.data() + s.size() || seconds < 0) return std::nullopt;
  return milliseconds(std::min<std::int64_t>(seconds, 3600) * 1000);
}

std::string url_encode(std::string_view s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += c;
    } else {
      out += '%';
      out += hex[u >> 4];
      out += hex[u & 15];
    }
  }
  return out;
}

std::string origin_of(const std::string& url) {
  auto scheme_end = url.find("://");
  if (scheme_end == std::string::npos) return url;
  auto path = url.find_first_of("/?#", scheme_end + 3);
  return lower(url.substr(0, path));
}

}  // namespace procpool::azure::detail
