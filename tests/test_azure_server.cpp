// procpool-transcribe-server end to end: HTTP clients (cpp-httplib) -> the server -> a pool of
// self-exec workers (the server binary) -> the loopback Azure mock, all on 127.0.0.1 with ports
// the OS chooses. The server runs in-process (TranscribeServer) and, for SIGTERM, as a process.
#include <fcntl.h>
#include <httplib.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <azure_transcription/server.hpp>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "azure_catch.hpp"
#include "azure_test_helpers.hpp"
#include "mock_server.hpp"
#include "test_support.hpp"

using json = nlohmann::json;
using procpool::azure::ServerOptions;
using procpool::azure::TranscribeServer;
using procpool::azure_mock::Endpoint;
using procpool::azure_mock::Fault;
using procpool::azure_mock::MockServer;
using procpool::azure_test::Has;
using procpool::azure_test::tone_wav;

extern char** environ;

namespace {

using Clock = std::chrono::steady_clock;

ServerOptions test_options(std::size_t workers) {
  ServerOptions o;
  o.port = 0;
  o.workers = workers;
  o.worker_executable = PROCPOOL_TRANSCRIBE_SERVER;
  o.job_timeout = std::chrono::seconds(60);
  o.idle_timeout = std::chrono::milliseconds(0);
  o.drain = std::chrono::seconds(10);
  o.quiet = true;
  o.log = [](std::string_view) {};
  return o;
}

std::string to_string(const std::vector<std::byte>& bytes) {
  return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

struct Client {
  httplib::Client http;
  explicit Client(int port) : http("127.0.0.1", port) {
    http.set_read_timeout(std::chrono::seconds(60));
    http.set_connection_timeout(std::chrono::seconds(5));
  }
  httplib::Result post_raw(const std::string& path, const std::vector<std::byte>& audio,
                           const std::string& type = "audio/wav") {
    return http.Post(path, to_string(audio), type);
  }
};

json body_json(const httplib::Result& r) {
  REQUIRE(r);
  return json::parse(r->body);
}

void check_error(const httplib::Result& r, int status, const std::string& code = "") {
  REQUIRE(r);
  INFO(r->body);
  CHECK(r->status == status);
  CHECK(r->get_header_value("Content-Type") == "application/json");
  json j = json::parse(r->body);
  REQUIRE(j.contains("error"));
  CHECK(j["error"]["status"] == status);
  CHECK_FALSE(j["error"]["message"].get<std::string>().empty());
  if (!code.empty()) CHECK(j["error"]["code"] == code);
}

std::uint64_t recycles(const json& stats) {
  std::uint64_t n = 0;
  for (auto& [reason, count] : stats.at("recycles_by_reason").items())
    n += count.get<std::uint64_t>();
  return n;
}

}  // namespace

TEST_CASE("options come from flags over the environment", "[azure][server]") {
  std::map<std::string, std::string> env = {{"PROCPOOL_TRANSCRIBE_WORKERS", "5"},
                                            {"PROCPOOL_TRANSCRIBE_MEMORY_SOFT_LIMIT_MB", "300"}};
  ServerOptions o = procpool::azure::parse_server_options(
      {"--workers", "3", "--idle-recycle-s=60", "--memory-metric", "uss", "--quiet"}, env);
  CHECK(o.workers == 3);
  CHECK(o.memory_soft_limit == std::uint64_t{300} << 20);
  CHECK(o.idle_timeout == std::chrono::seconds(60));
  CHECK(o.memory_metric == procpool::MemoryMetric::uss);
  CHECK(o.quiet);
  ServerOptions d = procpool::azure::parse_server_options({}, {});
  CHECK(d.idle_timeout == std::chrono::minutes(5));
  CHECK(d.memory_soft_limit > 0);
  CHECK(d.job_timeout > std::chrono::seconds(0));
  // Memory protection is on by default: kernel caps at the hard limit, a budget of 0.7 of the
  // container's limit; and each can be set or turned off.
  procpool::PoolOptions protective = procpool::azure::make_pool_options(d);
  CHECK(protective.worker_cgroups.enabled);
  CHECK(protective.worker_cgroups.max_bytes == 0);  // the hard limit
  CHECK_FALSE(protective.worker_cgroups.required);
  CHECK(protective.memory_budget.host_limit_fraction == 0.7);
  CHECK(protective.memory_budget.bytes == 0);
  ServerOptions m = procpool::azure::parse_server_options(
      {"--worker-memory-cap-mb", "512", "--worker-cgroup-parent", "/sys/fs/cgroup/memory/svc",
       "--memory-budget-mb=2048"},
      {{"PROCPOOL_TRANSCRIBE_MEMORY_BUDGET_FRACTION", "0.5"}});
  procpool::PoolOptions named = procpool::azure::make_pool_options(m);
  CHECK(named.worker_cgroups.max_bytes == std::uint64_t{512} << 20);
  CHECK(named.worker_cgroups.parent == "/sys/fs/cgroup/memory/svc");
  CHECK(named.memory_budget.bytes == std::uint64_t{2048} << 20);
  CHECK(named.memory_budget.host_limit_fraction == 0);  // the bytes win
  procpool::PoolOptions off =
      procpool::azure::make_pool_options(procpool::azure::parse_server_options(
          {"--worker-memory-cgroups", "0", "--memory-budget-fraction", "0"}, {}));
  CHECK_FALSE(off.worker_cgroups.enabled);
  CHECK(off.memory_budget.host_limit_fraction == 0);
  CHECK_THROWS_WITH(procpool::azure::parse_server_options({"--memory-budget-fraction", "1.5"}, {}),
                    Has("memory-budget-fraction"));
  CHECK_THROWS_WITH(procpool::azure::parse_server_options({"--worker-memory-cgroups", "yes"}, {}),
                    Has("worker-memory-cgroups"));
  CHECK_THROWS_WITH(procpool::azure::parse_server_options({"--workers", "x"}, {}), Has("workers"));
  CHECK_THROWS_WITH(procpool::azure::parse_server_options({"--nope", "1"}, {}), Has("--nope"));
  CHECK_THROWS_WITH(
      procpool::azure::parse_server_options({}, {{"PROCPOOL_TRANSCRIBE_PORT", "99999"}}),
      Has("PROCPOOL_TRANSCRIBE_PORT"));
}

TEST_CASE("raw and multipart uploads are transcribed, bad input gets 4xx JSON", "[azure][server]") {
  MockServer mock;
  procpool::azure_test::point_environment_at(mock, 1);  // two scripted faults exhaust one retry
  const int host = static_cast<int>(::getpid());
  {
    ServerOptions o = test_options(2);
    o.max_body_bytes = std::size_t{4} << 20;
    TranscribeServer server(o);
    server.start();
    Client c(server.port());

    SECTION("raw body with query parameters") {
      auto audio = tone_wav(2.0, 7);
      auto r = c.post_raw(
          "/transcriptions?locale=en-US&format=detailed&profanity=masked&api=short_audio", audio);
      REQUIRE(r);
      INFO(r->body);
      REQUIRE(r->status == 200);
      CHECK(r->get_header_value("Content-Type") == "application/json");
      json j = json::parse(r->body);
      CHECK(j["display_text"] == procpool::azure_mock::expected_text(audio));
      CHECK(j["api"] == "short");
      CHECK(j["status"] == "Success");
      CHECK_FALSE(j["nbest"].empty());
      auto seen = mock.requests();
      REQUIRE_FALSE(seen.empty());
      CHECK(seen.back().query["language"] == "en-US");
      CHECK(seen.back().query["format"] == "detailed");
    }
    SECTION("multipart with a definition, short and long audio") {
      auto audio = tone_wav(3.0, 8);
      httplib::MultipartFormDataItems items = {
          {"audio", to_string(audio), "clip.wav", "audio/wav"},
          {"definition", R"({"locales":["en-US"],"profanityFilterMode":"Masked"})", "",
           "application/json"}};
      auto r = c.http.Post("/transcriptions", items);
      REQUIRE(r);
      INFO(r->body);
      REQUIRE(r->status == 200);
      CHECK(json::parse(r->body)["display_text"] == procpool::azure_mock::expected_text(audio));

      auto long_audio = tone_wav(61.0, 9);  // over short audio's limit: fast transcription
      httplib::MultipartFormDataItems long_items = {
          {"audio", to_string(long_audio), "long.wav", "application/octet-stream"},
          {"definition",
           R"({"locales":["en-US","de-DE"],"diarization":{"enabled":true,)"
           R"("maxSpeakers":3}})",
           "", ""}};
      auto f = c.http.Post("/transcriptions", long_items);
      REQUIRE(f);
      INFO(f->body);
      REQUIRE(f->status == 200);
      json j = json::parse(f->body);
      CHECK(j["api"] == "fast");
      CHECK(j["display_text"] == procpool::azure_mock::expected_text(long_audio));
      auto seen = mock.requests();
      REQUIRE_FALSE(seen.empty());
      CHECK(seen.back().endpoint == Endpoint::fast);
      CHECK_THAT(seen.back().definition, Has("de-DE"));
    }
    SECTION("bad requests") {
      auto audio = tone_wav(1.0, 3);
      check_error(c.http.Post("/transcriptions", "", "audio/wav"), 400, "EmptyAudio");
      check_error(c.post_raw("/transcriptions?colour=blue", audio), 400, "InvalidQueryParameter");
      check_error(c.post_raw("/transcriptions?format=verbose", audio), 400,
                  "InvalidQueryParameter");
      check_error(c.post_raw("/transcriptions?max_speakers=x", audio), 400,
                  "InvalidQueryParameter");
      check_error(c.http.Post("/transcriptions", "hello", "text/plain"), 415,
                  "UnsupportedMediaType");
      // Not a WAV at all: the adapter refuses it in the worker before any network call.
      std::uint64_t before = mock.counters().total;
      check_error(c.http.Post("/transcriptions", "RIFF....WAVEjunk", "audio/wav"), 400);
      check_error(c.post_raw("/transcriptions", audio, "audio/x-unknown"), 400);
      CHECK(mock.counters().total == before);
      httplib::MultipartFormDataItems no_audio = {{"definition", "{}", "", ""}};
      check_error(c.http.Post("/transcriptions", no_audio), 400, "MissingAudio");
      httplib::MultipartFormDataItems bad_def = {{"audio", to_string(audio), "a.wav", "audio/wav"},
                                                 {"definition", "{not json", "", ""}};
      check_error(c.http.Post("/transcriptions", bad_def), 400, "InvalidDefinition");
      httplib::MultipartFormDataItems wrong_type = {
          {"audio", to_string(audio), "a.wav", "audio/wav"},
          {"definition", R"({"locales":"en-US"})", "", ""}};
      check_error(c.http.Post("/transcriptions", wrong_type), 400, "InvalidDefinition");
      // Numbers that no int can hold (get<int>() of them would be undefined behaviour).
      for (const char* definition : {R"({"diarization":{"maxSpeakers":1e300}})",
                                     R"({"diarization":{"maxSpeakers":4294967296}})",
                                     R"({"channels":[0, 1.5]})", R"({"channels":7})"}) {
        INFO(definition);
        httplib::MultipartFormDataItems out_of_range = {
            {"audio", to_string(audio), "a.wav", "audio/wav"}, {"definition", definition, "", ""}};
        check_error(c.http.Post("/transcriptions", out_of_range), 400, "InvalidDefinition");
      }
      check_error(c.http.Get("/nowhere"), 404, "NotFound");
      std::string big(std::size_t{5} << 20, 'x');
      check_error(c.http.Post("/transcriptions", big, "audio/wav"), 413);
      // The service is still fine.
      auto ok = c.post_raw("/transcriptions", audio);
      REQUIRE(ok);
      CHECK(ok->status == 200);
    }
    server.shutdown();
  }
  CHECK(procpool::test::zombie_children(host).empty());
  CHECK(procpool::test::shm_entries_for(host).empty());
}

TEST_CASE("Azure failures map to 502/503/504 with Azure's code, never the key", "[azure][server]") {
  MockServer mock;
  procpool::azure_test::point_environment_at(mock, 1);  // two scripted faults exhaust one retry
  ServerOptions o = test_options(1);
  TranscribeServer server(o);
  server.start();
  Client c(server.port());
  auto audio = tone_wav(1.0, 11);
  const std::string key = mock.options().key;

  auto expect = [&](int status, const std::string& kind, int azure_status) {
    auto r = c.post_raw("/transcriptions", audio);
    REQUIRE(r);
    INFO(r->body);
    CHECK(r->status == status);
    CHECK(r->body.find(key) == std::string::npos);
    json e = json::parse(r->body).at("error");
    CHECK(e["source"] == "azure");
    CHECK(e["kind"] == kind);
    CHECK(e["status"] == status);
    if (azure_status != 0) CHECK(e["azure_status"] == azure_status);
    CHECK_FALSE(e["code"].get<std::string>().empty());
    return e;
  };

  mock.push_fault(Endpoint::short_audio, Fault::http(400));  // not retried
  expect(502, "bad_request", 400);
  for (int i = 0; i < 2; ++i)
    mock.push_fault(Endpoint::short_audio, Fault::http(503));
  expect(503, "service_error", 503);
  for (int i = 0; i < 2; ++i)
    mock.push_fault(Endpoint::short_audio, Fault::http(500));
  expect(502, "service_error", 500);
  for (int i = 0; i < 2; ++i)
    mock.push_fault(Endpoint::short_audio, Fault::http(429, 0));
  auto throttled = c.post_raw("/transcriptions", audio);
  REQUIRE(throttled);
  CHECK(throttled->status == 503);
  CHECK(throttled->has_header("Retry-After"));
  for (int i = 0; i < 2; ++i)
    mock.push_fault(Endpoint::short_audio, Fault::http(408));
  expect(504, "timeout", 408);
  for (int i = 0; i < 2; ++i)
    mock.push_fault(Endpoint::short_audio, Fault::drop());
  expect(502, "connection", 0);
  mock.push_fault(Endpoint::short_audio, Fault::echo_key());  // a server quoting the key back
  expect(502, "bad_request", 400);
  // A 503 then a success: the retry inside the worker hides it.
  mock.push_fault(Endpoint::short_audio, Fault::http(503));
  auto ok = c.post_raw("/transcriptions", audio);
  REQUIRE(ok);
  CHECK(ok->status == 200);
  CHECK(json::parse(ok->body)["attempts"] == 2);
  CHECK(mock.pending_faults() == 0);
}

TEST_CASE("a job over the pool's timeout is a 504; the service carries on", "[azure][server]") {
  MockServer mock;
  procpool::azure_test::point_environment_at(mock, 1);  // two scripted faults exhaust one retry
  ServerOptions o = test_options(1);
  o.job_timeout = std::chrono::milliseconds(700);
  o.attempts = 1;
  TranscribeServer server(o);
  server.start();
  Client c(server.port());
  auto audio = tone_wav(1.0, 12);
  mock.push_fault(Endpoint::short_audio, Fault::slow(std::chrono::seconds(20)));
  auto r = c.post_raw("/transcriptions", audio);
  REQUIRE(r);
  INFO(r->body);
  CHECK(r->status == 504);
  CHECK(json::parse(r->body)["error"]["code"] == "timeout");
  auto ok = c.post_raw("/transcriptions", audio);
  REQUIRE(ok);
  CHECK(ok->status == 200);
  mock.stop();  // wakes the slow fault's handler
}

TEST_CASE("healthz, stats and metrics", "[azure][server]") {
  MockServer mock;
  procpool::azure_test::point_environment_at(mock, 1);  // two scripted faults exhaust one retry
  {
    TranscribeServer server(test_options(2));
    server.start();
    Client c(server.port());
    auto r = c.post_raw("/transcriptions", tone_wav(1.0, 21));
    REQUIRE(r);
    CHECK(r->status == 200);

    auto h = c.http.Get("/healthz");
    REQUIRE(h);
    CHECK(h->status == 200);
    CHECK(body_json(h)["status"] == "healthy");

    auto s = c.http.Get("/stats");
    REQUIRE(s);
    CHECK(s->status == 200);
    CHECK(s->get_header_value("Content-Type") == "application/json");
    json stats = json::parse(s->body);
    CHECK(stats["health"] == "healthy");
    CHECK(stats["workers"].is_array());
    CHECK(stats["succeeded"] == 1);
    REQUIRE(stats["jobs"].is_array());
    REQUIRE(stats["jobs"].size() == 1);
    CHECK(stats["jobs"][0]["name"] == "azure.transcribe");
    CHECK(stats["jobs"][0]["completed"] == 1);

    auto m = c.http.Get("/metrics");
    REQUIRE(m);
    CHECK(m->status == 200);
    CHECK(m->get_header_value("Content-Type") == "text/plain; version=0.0.4");
    CHECK_THAT(m->body, Has("# TYPE procpool_"));
    CHECK_THAT(m->body, Has("procpool_health"));
    CHECK(m->body.find(mock.options().key) == std::string::npos);
    CHECK(s->body.find(mock.options().key) == std::string::npos);
  }
  {
    // Workers that cannot start: the restart-storm breaker degrades the pool, /healthz says 503
    // and transcriptions fail fast with 503.
    ServerOptions o = test_options(1);
    o.worker_executable = "/bin/false";
    TranscribeServer server(o);
    server.start();
    Client c(server.port());
    int status = 0;
    CHECK(procpool::test::eventually(
        [&] {
          auto h = c.http.Get("/healthz");
          status = h ? h->status : 0;
          return status == 503;
        },
        std::chrono::seconds(30)));
    auto r = c.post_raw("/transcriptions", tone_wav(1.0, 22));
    REQUIRE(r);
    CHECK(r->status == 503);
    CHECK(json::parse(r->body)["error"]["code"] == "pool_degraded");
  }
}

TEST_CASE("concurrent clients while workers recycle all get the right answer or error",
          "[azure][server]") {
  MockServer mock;
  procpool::azure_test::point_environment_at(mock, 1);  // two scripted faults exhaust one retry
  const int host = static_cast<int>(::getpid());
  {
    ServerOptions o = test_options(3);
    o.max_jobs = 3;
    TranscribeServer server(o);
    server.start();

    constexpr int threads = 5;
    constexpr int per_thread = 8;
    std::vector<std::string> failures(threads);
    std::vector<std::thread> clients;
    for (int t = 0; t < threads; ++t) {
      clients.emplace_back([&, t] {
        Client c(server.port());
        for (int i = 0; i < per_thread; ++i) {
          int seed = t * 100 + i;
          std::string tag = "client " + std::to_string(t) + " #" + std::to_string(i) + ": ";
          bool invalid = i % 4 == 3;
          std::vector<std::byte> audio = tone_wav(1.0 + i % 3, seed);
          httplib::Result r = [&] {
            if (invalid) return c.http.Post("/transcriptions", "RIFFjunk", "audio/wav");
            if (i % 2 == 0) return c.post_raw("/transcriptions?locale=en-US", audio);
            httplib::MultipartFormDataItems items = {
                {"audio", to_string(audio), "a.wav", "audio/wav"}};
            return c.http.Post("/transcriptions", items);
          }();
          if (!r) {
            failures[t] += tag + "no response\n";
            continue;
          }
          try {
            json j = json::parse(r->body);
            if (invalid) {
              if (r->status != 400 || j["error"]["kind"] != "invalid_audio") {
                failures[t] += tag + "expected 400 invalid_audio, got " + r->body + "\n";
              }
            } else if (r->status != 200 ||
                       j["display_text"] != procpool::azure_mock::expected_text(audio)) {
              failures[t] += tag + std::to_string(r->status) + " " + r->body + "\n";
            }
          } catch (const std::exception& e) {
            failures[t] += tag + "bad JSON: " + e.what() + "\n";
          }
        }
      });
    }
    for (auto& t : clients)
      t.join();
    for (const auto& f : failures)
      CHECK(f.empty());

    Client c(server.port());
    json stats = body_json(c.http.Get("/stats"));
    CHECK(stats["submitted"] == threads * per_thread);
    CHECK(recycles(stats) >= 5);
    CHECK(stats["recycles_by_reason"]["max_jobs"].get<std::uint64_t>() >= 5);
    server.shutdown();
  }
  CHECK(procpool::test::zombie_children(host).empty());
  CHECK(procpool::test::shm_entries_for(host).empty());
}

TEST_CASE("--simulate-native-leak-mb leaks in the worker and the soft limit recycles it",
          "[azure][server]") {
  MockServer mock;
  procpool::azure_test::point_environment_at(mock, 1);  // two scripted faults exhaust one retry
  ServerOptions o = test_options(1);
  o.simulate_leak_mb = 64;
  o.memory_soft_limit = std::uint64_t{48} << 20;
  o.memory_hard_limit = 0;
  TranscribeServer server(o);
  server.start();
  Client c(server.port());
  for (int i = 0; i < 3; ++i) {
    auto audio = tone_wav(1.0, 30 + i);
    auto r = c.post_raw("/transcriptions", audio);
    REQUIRE(r);
    CHECK(r->status == 200);
  }
  json stats = body_json(c.http.Get("/stats"));
  INFO(stats.dump());
  CHECK(stats["recycles_by_reason"]["memory_soft_limit"].get<std::uint64_t>() >= 2);
  // The per-job memory attribution names the leak: each job left its worker ~64 MiB bigger.
  REQUIRE(stats["jobs"].size() == 1);
  CHECK(stats["jobs"][0]["memory_delta_mean_bytes"].get<double>() > 60.0 * (1 << 20));
}

TEST_CASE("SIGTERM stops accepting, drains the request in flight, and exits 0", "[azure][server]") {
  MockServer mock;
  procpool::azure_test::point_environment_at(mock, 1);  // two scripted faults exhaust one retry

  int out[2];
  REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  std::vector<std::string> args = {
      PROCPOOL_TRANSCRIBE_SERVER, "--port", "0", "--workers", "1", "--quiet", "--drain-s", "20"};
  std::vector<char*> argv;
  for (auto& a : args)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  int rc = posix_spawn(&pid, args[0].c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(out[1]);
  REQUIRE(rc == 0);

  // Read "listening on http://127.0.0.1:PORT" with a deadline.
  std::string banner;
  auto deadline = Clock::now() + std::chrono::seconds(30);
  while (banner.find('\n') == std::string::npos && Clock::now() < deadline) {
    pollfd p{out[0], POLLIN, 0};
    if (::poll(&p, 1, 100) > 0) {
      char buf[256];
      ssize_t n = ::read(out[0], buf, sizeof buf);
      if (n <= 0) break;
      banner.append(buf, static_cast<std::size_t>(n));
    }
  }
  ::close(out[0]);
  INFO(banner);
  auto colon = banner.rfind(':');
  REQUIRE(banner.find("listening on http://127.0.0.1:") == 0);
  int port = std::atoi(banner.c_str() + colon + 1);
  REQUIRE(port > 0);

  // A request that takes a while at Azure is in flight when SIGTERM arrives.
  auto audio = tone_wav(1.0, 41);
  mock.push_fault(Endpoint::short_audio, Fault::slow(std::chrono::milliseconds(1500)));
  std::optional<int> status;
  std::string body;
  std::thread client([&] {
    Client c(port);
    auto r = c.post_raw("/transcriptions", audio);
    if (r) {
      status = r->status;
      body = r->body;
    }
  });
  CHECK(procpool::test::eventually([&] { return mock.pending_faults() == 0; },
                                   std::chrono::seconds(30)));
  REQUIRE(::kill(pid, SIGTERM) == 0);

  int wstatus = 0;
  bool exited = procpool::test::eventually(
      [&] {
        pid_t w = ::waitpid(pid, &wstatus, WNOHANG);
        return w == pid;
      },
      std::chrono::seconds(30));
  if (!exited) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &wstatus, 0);
  }
  client.join();
  CHECK(exited);
  CHECK(WIFEXITED(wstatus));
  CHECK(WEXITSTATUS(wstatus) == 0);
  REQUIRE(status);
  CHECK(*status == 200);
  CHECK(json::parse(body)["display_text"] == procpool::azure_mock::expected_text(audio));

  // Nothing listens any more, and the server left nothing behind.
  httplib::Client after("127.0.0.1", port);
  after.set_connection_timeout(std::chrono::seconds(2));
  CHECK_FALSE(after.Get("/healthz"));
  CHECK(procpool::test::shm_entries_for(pid).empty());
}
