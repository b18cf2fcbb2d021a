// WorkerLife: the state stats() shows follows from the transitions, a stop overtakes a
// retirement, and a worker that broke the protocol stays untrusted whatever comes after.
#include "catch.hpp"
#include "worker_life.hpp"

using namespace procpool::detail;
using procpool::RecycleReason;
using procpool::WorkerState;

TEST_CASE("a worker starts, becomes ready, and is idle or busy by whether it has a job") {
  WorkerLife life;
  CHECK(life.state(false) == WorkerState::starting);
  CHECK(life.state(true) == WorkerState::starting);
  CHECK_FALSE(life.ready());
  life.became_ready();
  CHECK(life.ready());
  CHECK(life.state(false) == WorkerState::idle);
  CHECK(life.state(true) == WorkerState::busy);
  CHECK_FALSE(life.leaving());
  CHECK_FALSE(life.stop_sent());
}

TEST_CASE("a retiring worker is retiring while it has a job, including one sent ahead") {
  WorkerLife life;
  life.became_ready();
  life.retire(RecycleReason::max_jobs, "its last job was given");
  REQUIRE(life.leaving() == RecycleReason::max_jobs);
  CHECK(life.leaving_detail() == "its last job was given");
  // has_job is true for its current job and for one it reached after it (prefetched): retiring.
  CHECK(life.state(true) == WorkerState::retiring);
  // With its job done and no stop sent yet, it is on its way out.
  CHECK(life.state(false) == WorkerState::stopping);
  CHECK_FALSE(life.stop_sent());
}

TEST_CASE("a stop overtakes a retirement and keeps its detail when given none") {
  WorkerLife life;
  life.became_ready();
  life.retire(RecycleReason::memory_soft_limit, "above the soft limit");
  life.stop(RecycleReason::job_timeout, "");
  CHECK(life.leaving() == RecycleReason::job_timeout);
  CHECK(life.leaving_detail() == "above the soft limit");
  CHECK(life.stop_sent());
  CHECK_FALSE(life.untrusted());
  CHECK(life.state(true) == WorkerState::stopping);
  life.stop(RecycleReason::shutdown, "the pool shuts down");
  CHECK(life.leaving() == RecycleReason::shutdown);
  CHECK(life.leaving_detail() == "the pool shuts down");
}

TEST_CASE("a worker that broke the protocol stays untrusted through later stops") {
  WorkerLife life;
  life.became_ready();
  life.broke_protocol("it claims a job it was never sent");
  CHECK(life.untrusted());
  CHECK(life.stop_sent());
  CHECK(life.leaving() == RecycleReason::protocol_violation);
  life.stop(RecycleReason::shutdown, "the pool shuts down");
  CHECK(life.untrusted());
  CHECK(life.leaving() == RecycleReason::protocol_violation);
  CHECK(life.leaving_detail() == "it claims a job it was never sent");
  CHECK(life.state(false) == WorkerState::stopping);
}

TEST_CASE("a kill is remembered apart from the stop that led to it") {
  WorkerLife life;
  CHECK_FALSE(life.kill_sent());
  life.stop(RecycleReason::start_failure, "it did not report ready");
  CHECK_FALSE(life.kill_sent());
  life.killed();
  CHECK(life.kill_sent());
  CHECK(life.state(false) == WorkerState::stopping);
}
