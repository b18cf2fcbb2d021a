// The server's errors: what it answers, as JSON, when a request is bad or its transcription failed.
#pragma once

#include <httplib.h>

#include <nlohmann/json.hpp>
#include <procpool/error.hpp>
#include <string>

#include "azure_transcription/types.hpp"

namespace procpool::azure::detail {

/// An HTTP error answer: {"error": {"status", "code", "message", "source", ...extra}}.
struct HttpError {
  int status = 500;
  std::string code;
  std::string message;
  std::string source = "server";  // server | azure | pool
  nlohmann::json extra = nlohmann::json::object();
};

/// The JSON body of `e`.
std::string error_body(const HttpError& e);

/// A request the server refuses itself (source "server"), 400 unless `status` says otherwise.
HttpError bad_request(std::string code, std::string message, int status = 400);

/// An Azure adapter failure (recovered from the job's message) as an HTTP error.
HttpError from_azure(const AzureError::Details& d);

/// A procpool job failure as an HTTP error.
HttpError from_job_error(const JobError& error);

/// Answers `status` with the JSON `body`.
void send_json(httplib::Response& res, int status, const std::string& body);
/// Answers with `e` (and Retry-After: 1 for a 503).
void send_error(httplib::Response& res, const HttpError& e);

}  // namespace procpool::azure::detail
