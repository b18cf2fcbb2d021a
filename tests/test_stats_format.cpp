// Stats render as valid JSON and valid Prometheus text exposition, carrying the same figures.
#include <nlohmann/json.hpp>
#include <procpool/procpool.hpp>
#include <regex>
#include <set>
#include <sstream>

#include "catch.hpp"
#include "test_support.hpp"

using namespace procpool;

namespace {

PoolStats busy_stats() {
  Pool pool(test::quiet_options(2));
  REQUIRE(pool.submit("echo", test::bytes("a")).get().ok());
  REQUIRE_FALSE(pool.submit("fail", test::bytes("b")).get().ok());
  REQUIRE_FALSE(pool.submit("sigkill", Bytes{}).get().ok());
  REQUIRE(pool.submit("echo", test::bytes("c")).get().ok());
  REQUIRE(test::eventually([&] { return pool.stats().workers.size() == 2; }));
  return pool.stats();
}

}  // namespace

TEST_CASE("to_json produces one JSON object with the pool, its workers and its jobs") {
  PoolStats stats = busy_stats();
  nlohmann::json json = nlohmann::json::parse(to_json(stats));
  CHECK(json["health"] == "healthy");
  CHECK(json["submitted"] == 4);
  CHECK(json["succeeded"] == 2);
  CHECK(json["failed_by_kind"]["handler_error"] == 1);
  CHECK(json["failed_by_kind"]["worker_crashed"] == 1);
  CHECK(json["recycles_by_reason"]["crash"] == 1);
  REQUIRE(json["workers"].size() == 2);
  CHECK(json["workers"][0]["pid"].get<int>() > 0);
  CHECK(json["workers"][0]["rss_bytes"].get<std::uint64_t>() > 0);
  std::set<std::string> names;
  for (const auto& job : json["jobs"])
    names.insert(job["name"].get<std::string>());
  CHECK(names == std::set<std::string>{"echo", "fail", "sigkill"});
}

TEST_CASE("to_json escapes what would break JSON") {
  PoolStats stats;
  JobStats odd;
  odd.name = "quote\" backslash\\ newline\n tab\t ctrl\x01";
  stats.jobs.push_back(odd);
  nlohmann::json json = nlohmann::json::parse(to_json(stats));
  CHECK(json["jobs"][0]["name"] == odd.name);
}

TEST_CASE("to_prometheus writes well-formed families with HELP, TYPE and labelled samples") {
  PoolStats stats = busy_stats();
  std::string text = to_prometheus(stats);
  std::istringstream lines(text);
  std::string line;
  std::set<std::string> typed, sampled;
  const std::regex sample(
      R"(^(procpool_[a-z0-9_]+)(\{([a-z_]+="([^"\\]|\\.)*",?)+\})? (-?[0-9.e+-]+)$)");
  const std::regex type(R"(^# TYPE (procpool_[a-z0-9_]+) (gauge|counter)$)");
  while (std::getline(lines, line)) {
    std::smatch m;
    if (line.starts_with("# HELP procpool_")) continue;
    if (std::regex_match(line, m, type)) {
      typed.insert(m[1]);
      continue;
    }
    INFO(line);
    REQUIRE(std::regex_match(line, m, sample));
    sampled.insert(m[1]);
  }
  for (const auto& name : sampled)
    CHECK(typed.count(name) == 1);
  CHECK(text.find("procpool_jobs_failed_total{kind=\"worker_crashed\"} 1\n") != std::string::npos);
  CHECK(text.find("procpool_recycles_total{reason=\"crash\"} 1\n") != std::string::npos);
  CHECK(text.find("procpool_health{state=\"healthy\"} 1\n") != std::string::npos);
  CHECK(text.find("procpool_worker_rss_bytes{worker=\"") != std::string::npos);
  CHECK(text.find("procpool_job_completed_total{job=\"echo\"} 2\n") != std::string::npos);
}

TEST_CASE("to_prometheus escapes label values") {
  PoolStats stats;
  JobStats odd;
  odd.name = "a\"b\\c\nd";
  stats.jobs.push_back(odd);
  std::string text = to_prometheus(stats);
  CHECK(text.find("job=\"a\\\"b\\\\c\\nd\"") != std::string::npos);
}

TEST_CASE("the memory figures (enforcement, caps, budget) render the same in JSON and Prometheus") {
  PoolOptions options = test::quiet_options(1);
  options.memory_budget.bytes = std::uint64_t{256} << 20;
  Pool pool(options);
  SubmitOptions too_big;
  too_big.expected_memory_bytes = std::uint64_t{300} << 20;
  REQUIRE(pool.submit("echo", test::bytes("a")).get().ok());
  REQUIRE(pool.submit("echo", test::bytes("b"), too_big).get().error().kind ==
          ErrorKind::memory_limit);
  PoolStats stats = pool.stats();
  REQUIRE(stats.memory.budget_in_use_bytes > 0);

  nlohmann::json memory = nlohmann::json::parse(to_json(stats))["memory"];
  CHECK(memory["enforcement"] == "sampled");
  CHECK(memory["worker_cgroups"] == "");
  CHECK(memory["worker_cap_bytes"] == 0);
  CHECK(memory["worker_oom_score_adj"] == 1000);
  CHECK(memory["budget_bytes"] == stats.memory.budget_bytes);
  CHECK(memory["budget_in_use_bytes"] == stats.memory.budget_in_use_bytes);
  CHECK(memory["jobs_held_for_memory"] == 0);
  CHECK(memory["holding_job_for_memory"] == false);
  CHECK(memory["jobs_over_budget"] == 1);

  const std::string text = to_prometheus(stats);
  auto has = [&](const std::string& line) { return text.find(line + "\n") != std::string::npos; };
  CHECK(has("procpool_memory_enforcement{enforcement=\"sampled\"} 1"));
  CHECK(has("procpool_memory_enforcement{enforcement=\"cgroup_v2\"} 0"));
  CHECK(has("procpool_worker_memory_cap_bytes 0"));
  CHECK(has("procpool_memory_budget_bytes 268435456"));
  CHECK(has("procpool_memory_budget_in_use_bytes " +
            std::to_string(stats.memory.budget_in_use_bytes)));
  CHECK(has("procpool_jobs_held_for_memory_total 0"));
  CHECK(has("procpool_job_holding_for_memory 0"));
  CHECK(has("procpool_jobs_over_memory_budget_total 1"));
  CHECK(has("procpool_recycles_total{reason=\"memory_budget\"} 0"));
  CHECK(has("procpool_recycles_total{reason=\"oom_kill\"} 0"));
}
