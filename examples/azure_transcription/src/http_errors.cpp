#include "http_errors.hpp"

#include <utility>

namespace procpool::azure::detail {

std::string error_body(const HttpError& e) {
  nlohmann::json err = {
      {"status", e.status}, {"code", e.code}, {"message", e.message}, {"source", e.source}};
  for (auto it = e.extra.begin(); it != e.extra.end(); ++it)
    err[it.key()] = it.value();
  return nlohmann::json{{"error", err}}.dump();
}

HttpError bad_request(std::string code, std::string message, int status) {
  return HttpError{status, std::move(code), std::move(message), "server", nlohmann::json::object()};
}

HttpError from_azure(const AzureError::Details& d) {
  HttpError e;
  e.source = "azure";
  e.message = d.message;
  e.code = d.code;
  switch (d.kind) {
    case ErrorKind::invalid_audio:
    case ErrorKind::invalid_request:
      e.status = 400;
      e.source = "server";  // refused before anything was sent
      break;
    case ErrorKind::configuration:
      e.status = 500;
      e.source = "server";
      break;
    case ErrorKind::throttled:
      e.status = 503;
      break;
    case ErrorKind::service_error:
      e.status = d.http_status == 503 ? 503 : 502;
      break;
    case ErrorKind::timeout:
      e.status = 504;
      break;
    case ErrorKind::authentication:
    case ErrorKind::bad_request:
    case ErrorKind::connection:
    case ErrorKind::bad_response:
      e.status = 502;
      break;
  }
  if (e.code.empty()) e.code = std::string(to_string(d.kind));
  e.extra["kind"] = std::string(to_string(d.kind));
  if (d.http_status != 0) e.extra["azure_status"] = d.http_status;
  if (!d.request_id.empty()) e.extra["request_id"] = d.request_id;
  e.extra["attempts"] = d.attempts;
  return e;
}

HttpError from_job_error(const JobError& error) {
  if (error.kind == procpool::ErrorKind::handler_error) {
    if (auto d = AzureError::from_message(error.message)) return from_azure(*d);
  }
  HttpError e;
  e.source = "pool";
  e.code = std::string(procpool::to_string(error.kind));
  e.message = error.message;
  switch (error.kind) {
    case procpool::ErrorKind::timeout:
      e.status = 504;
      e.message = "the transcription did not finish within the job timeout";
      break;
    case procpool::ErrorKind::deadline_exceeded:
      e.status = 504;
      break;
    case procpool::ErrorKind::queue_full:
    case procpool::ErrorKind::shutting_down:
    case procpool::ErrorKind::pool_degraded:
    case procpool::ErrorKind::cancelled:
      e.status = 503;
      break;
    case procpool::ErrorKind::payload_too_large:
      e.status = 413;
      break;
    default:
      e.status = 500;
      break;
  }
  e.extra["attempts"] = error.attempts;
  return e;
}

void send_json(httplib::Response& res, int status, const std::string& body) {
  res.status = status;
  res.set_content(body, "application/json");
}

void send_error(httplib::Response& res, const HttpError& e) {
  if (e.status == 503) res.set_header("Retry-After", "1");
  send_json(res, e.status, error_body(e));
}

}  // namespace procpool::azure::detail
