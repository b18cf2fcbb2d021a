// Recycle decisions, without processes: every rule, its threshold edges, jitter, and precedence.
#include <set>

#include "catch.hpp"
#include "policy.hpp"

using namespace procpool;
using namespace procpool::detail;
using namespace std::chrono_literals;

namespace {

constexpr std::uint64_t MiB = std::uint64_t{1} << 20;
const PolicyClock::time_point t0 = PolicyClock::time_point{} + 1h;

WorkerFacts fresh() {
  WorkerFacts facts;
  facts.ready_at = t0;
  facts.idle_since = t0;
  return facts;
}

}  // namespace

TEST_CASE("with no policy set, every worker is kept forever") {
  RecyclePolicy policy;
  WorkerFacts facts = fresh();
  facts.jobs_done = 1'000'000;
  facts.memory = 100'000 * MiB;
  Decision d = decide(facts, policy, t0 + 1000h);
  CHECK(d.verdict == Verdict::keep);
  CHECK_FALSE(d.recheck_at.has_value());
}

TEST_CASE("max_jobs retires a worker once it has run its limit, not before") {
  RecyclePolicy policy;
  policy.max_jobs = 10;
  WorkerFacts facts = fresh();
  facts.job_limit = jittered_job_limit(policy, 0.0);
  facts.jobs_done = 9;
  CHECK(decide(facts, policy, t0).verdict == Verdict::keep);
  facts.jobs_done = 10;
  Decision d = decide(facts, policy, t0);
  CHECK(d.verdict == Verdict::retire);
  CHECK(d.reason == RecycleReason::max_jobs);
  CHECK(d.detail == "it ran 10 jobs (limit 10)");
}

TEST_CASE("max_jobs counts the jobs in hand: a worker retires as its last job starts") {
  RecyclePolicy policy;
  policy.max_jobs = 10;
  WorkerFacts facts = fresh();
  facts.job_limit = jittered_job_limit(policy, 0.0);
  facts.busy = true;
  facts.jobs_done = 8;
  facts.jobs_in_hand = 1;
  CHECK(decide(facts, policy, t0).verdict == Verdict::keep);
  facts.jobs_in_hand = 2;  // the one it runs and one prefetched: the tenth is in hand
  Decision d = decide(facts, policy, t0);
  CHECK(d.verdict == Verdict::retire);
  CHECK(d.reason == RecycleReason::max_jobs);
  CHECK(d.detail == "it has its last jobs in hand: 8 run, 2 under way (limit 10)");
}

TEST_CASE("job and lifetime jitter spread limits over [limit, limit + jitter]") {
  RecyclePolicy policy;
  policy.max_jobs = 100;
  policy.max_jobs_jitter = 20;
  policy.max_lifetime = 60s;
  policy.max_lifetime_jitter = 10s;
  CHECK(jittered_job_limit(policy, 0.0) == 100);
  CHECK(jittered_job_limit(policy, 0.5) == 110);
  CHECK(jittered_job_limit(policy, 0.999999) == 120);
  CHECK(jittered_lifetime(policy, 0.0) == 60s);
  CHECK(jittered_lifetime(policy, 0.999999) == 70s);
  std::set<std::uint64_t> seen;
  for (int i = 0; i < 1000; ++i)
    seen.insert(jittered_job_limit(policy, i / 1000.0));
  CHECK(seen.size() == 21);
  policy.max_jobs = 0;
  CHECK(jittered_job_limit(policy, 0.7) == 0);  // off stays off
}

TEST_CASE("max_lifetime retires at the end of life and asks to be rechecked then") {
  RecyclePolicy policy;
  policy.max_lifetime = 60s;
  WorkerFacts facts = fresh();
  facts.lifetime_limit = 60s;
  Decision early = decide(facts, policy, t0 + 59s);
  CHECK(early.verdict == Verdict::keep);
  REQUIRE(early.recheck_at.has_value());
  CHECK(*early.recheck_at == t0 + 60s);
  facts.busy = true;  // lifetime applies to busy workers too (they leave after the job)
  Decision late = decide(facts, policy, t0 + 60s);
  CHECK(late.verdict == Verdict::retire);
  CHECK(late.reason == RecycleReason::max_lifetime);
}

TEST_CASE("idle_timeout recycles an idle worker, scales down when allowed, and ignores busy ones") {
  RecyclePolicy policy;
  policy.idle_timeout = 5min;
  WorkerFacts facts = fresh();
  facts.idle_since = t0 + 10s;
  Decision waiting = decide(facts, policy, t0 + 10s + 4min);
  CHECK(waiting.verdict == Verdict::keep);
  CHECK(waiting.recheck_at == t0 + 10s + 5min);
  Decision idle = decide(facts, policy, t0 + 10s + 5min);
  CHECK(idle.verdict == Verdict::retire);
  CHECK(idle.reason == RecycleReason::idle_timeout);
  facts.scale_down_when_idle = true;
  CHECK(decide(facts, policy, t0 + 10s + 5min).reason == RecycleReason::scale_down);
  facts.busy = true;
  CHECK(decide(facts, policy, t0 + 10h).verdict == Verdict::keep);
}

TEST_CASE("the soft limit retires, the hard limit kills, and the hard limit wins") {
  RecyclePolicy policy;
  policy.memory_soft_limit = 500 * MiB;
  policy.memory_hard_limit = 1000 * MiB;
  WorkerFacts facts = fresh();
  facts.memory = 500 * MiB;
  CHECK(decide(facts, policy, t0).verdict == Verdict::keep);  // at the limit is within it
  facts.memory = 500 * MiB + 1;
  Decision soft = decide(facts, policy, t0);
  CHECK(soft.verdict == Verdict::retire);
  CHECK(soft.reason == RecycleReason::memory_soft_limit);
  CHECK(soft.detail.find("500.0 MiB") != std::string::npos);
  facts.memory = 1000 * MiB + 1;
  Decision hard = decide(facts, policy, t0);
  CHECK(hard.verdict == Verdict::kill_now);
  CHECK(hard.reason == RecycleReason::memory_hard_limit);
}

TEST_CASE(
    "a worker that started above the soft limit is not recycled for it, but the hard limit still "
    "applies") {
  RecyclePolicy policy;
  policy.memory_soft_limit = 100 * MiB;
  policy.memory_hard_limit = 400 * MiB;
  WorkerFacts facts = fresh();
  facts.soft_limit_waived = true;
  facts.memory = 300 * MiB;
  CHECK(decide(facts, policy, t0).verdict == Verdict::keep);
  facts.memory = 401 * MiB;
  CHECK(decide(facts, policy, t0).verdict == Verdict::kill_now);
}

TEST_CASE("growth over the worker's own baseline retires it; no baseline yet means no verdict") {
  RecyclePolicy policy;
  policy.memory_growth_limit = 50 * MiB;
  WorkerFacts facts = fresh();
  facts.memory = 900 * MiB;
  CHECK(decide(facts, policy, t0).verdict == Verdict::keep);  // before the baseline is taken
  facts.baseline = 200 * MiB;
  facts.memory = 250 * MiB;
  CHECK(decide(facts, policy, t0).verdict == Verdict::keep);
  facts.memory = 250 * MiB + 1;
  Decision d = decide(facts, policy, t0);
  CHECK(d.verdict == Verdict::retire);
  CHECK(d.reason == RecycleReason::memory_growth);
  facts.memory = 100 * MiB;  // shrinking below the baseline is fine
  CHECK(decide(facts, policy, t0).verdict == Verdict::keep);
}

TEST_CASE("memory rules come before job count, lifetime and idleness") {
  RecyclePolicy policy;
  policy.max_jobs = 1;
  policy.max_lifetime = 1s;
  policy.idle_timeout = 1s;
  policy.memory_soft_limit = 10 * MiB;
  WorkerFacts facts = fresh();
  facts.job_limit = 1;
  facts.lifetime_limit = 1s;
  facts.jobs_done = 5;
  facts.memory = 20 * MiB;
  CHECK(decide(facts, policy, t0 + 1h).reason == RecycleReason::memory_soft_limit);
  facts.memory = 1 * MiB;
  CHECK(decide(facts, policy, t0 + 1h).reason == RecycleReason::max_jobs);
  facts.jobs_done = 0;
  CHECK(decide(facts, policy, t0 + 1h).reason == RecycleReason::max_lifetime);
  facts.lifetime_limit = 0s;
  CHECK(decide(facts, policy, t0 + 1h).reason == RecycleReason::idle_timeout);
}

TEST_CASE("a worker with no memory reading yet is judged on the other rules only") {
  RecyclePolicy policy;
  policy.memory_hard_limit = 1;
  policy.max_jobs = 3;
  WorkerFacts facts = fresh();
  facts.job_limit = 3;
  facts.jobs_done = 3;
  CHECK(decide(facts, policy, t0).reason == RecycleReason::max_jobs);
}

TEST_CASE("sizes are formatted for people") {
  CHECK(format_bytes(512) == "512 B");
  CHECK(format_bytes(1536) == "1.5 KiB");
  CHECK(format_bytes(258 * MiB) == "258.0 MiB");
  CHECK(format_bytes(3 * 1024 * MiB) == "3.0 GiB");
}
