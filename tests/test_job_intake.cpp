// The job intake: what submitters share with the supervisor thread. Refusals (stopping, degraded,
// full) say which jobs were queued and which were not; a full queue with QueueFullPolicy::block
// holds a submitter until jobs leave it, or until the pool stops; the sleep handshake wakes the
// supervisor thread once per push, and only when asked to; jobs come out of it exactly once, in
// order (of priority, then of arrival), whoever pushes them.
#include <poll.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

#include "catch.hpp"
#include "job_intake.hpp"

using namespace procpool::detail;
using procpool::ErrorKind;
using procpool::JobId;
using procpool::QueueFullPolicy;

namespace {

Job job(JobId id) {
  Job j;
  j.id = id;
  j.name = "job-" + std::to_string(id);
  return j;
}

std::vector<Job> jobs(JobId first, JobId count) {
  std::vector<Job> made;
  for (JobId id = first; id < first + count; ++id)
    made.push_back(job(id));
  return made;
}

// Every job id left in the intake, in order (taken out).
std::vector<JobId> drain(JobIntake& intake) {
  std::vector<JobId> ids;
  JobQueue all = intake.take_all();
  while (!all.empty())
    ids.push_back(all.pop_front().id);
  return ids;
}

// Whether the supervisor thread would be woken: the wake descriptor is readable (read once, so
// the next question starts afresh).
bool woken(const JobIntake& intake) {
  pollfd p{intake.wake_descriptor(), POLLIN, 0};
  if (::poll(&p, 1, 0) != 1) return false;
  std::uint64_t count = 0;
  REQUIRE(::read(intake.wake_descriptor(), &count, sizeof count) == sizeof count);
  return true;
}

// Waits until `done` or 10 s pass; true if it happened.
template <class Condition>
bool eventually(Condition done) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::yield();
  }
  return true;
}

}  // namespace

TEST_CASE("a push queues jobs in order, or says from which job on it refused and why") {
  JobIntake intake(4, QueueFullPolicy::reject);
  std::vector<Job> batch = jobs(1, 6);
  JobIntake::Pushed pushed = intake.push(batch, true);
  CHECK(pushed.queued == 4);
  REQUIRE(pushed.refusal);
  CHECK(pushed.refusal->kind == ErrorKind::queue_full);
  CHECK(pushed.refusal->message.find("queue_capacity") != std::string::npos);
  // The refused jobs are still the caller's, untouched.
  CHECK(batch[4].name == "job-5");
  CHECK(batch[5].name == "job-6");
  CHECK(intake.state().queued == 4);
  CHECK(drain(intake) == std::vector<JobId>{1, 2, 3, 4});

  SECTION("degraded: every job refused with pool_degraded, until it is healthy again") {
    CHECK(intake.set_degraded(true));
    CHECK_FALSE(intake.set_degraded(true));  // no change
    std::vector<Job> more = jobs(7, 2);
    pushed = intake.push(more, true);
    CHECK(pushed.queued == 0);
    REQUIRE(pushed.refusal);
    CHECK(pushed.refusal->kind == ErrorKind::pool_degraded);
    CHECK(intake.set_degraded(false));
    pushed = intake.push(more, true);
    CHECK(pushed.queued == 2);
    CHECK_FALSE(pushed.refusal);
  }
  SECTION("stopping: refused with shutting_down, and the drain asked for is kept") {
    intake.stop(std::chrono::milliseconds{-5});
    JobIntake::State state = intake.state();
    CHECK(state.stopping);
    REQUIRE(state.drain_asked);
    CHECK(state.drain_asked->count() == 0);  // a negative drain is none
    std::vector<Job> more = jobs(7, 1);
    pushed = intake.push(more, true);
    CHECK(pushed.queued == 0);
    REQUIRE(pushed.refusal);
    CHECK(pushed.refusal->kind == ErrorKind::shutting_down);
  }
}

TEST_CASE("a full queue with the block policy holds a submitter until jobs leave it") {
  JobIntake intake(2, QueueFullPolicy::block);
  std::vector<Job> first = jobs(1, 2);
  REQUIRE(intake.push(first, true).queued == 2);

  SECTION("not a caller that may not wait (the supervisor thread): refused at once") {
    std::vector<Job> more = jobs(3, 1);
    JobIntake::Pushed pushed = intake.push(more, false);
    CHECK(pushed.queued == 0);
    REQUIRE(pushed.refusal);
    CHECK(pushed.refusal->kind == ErrorKind::queue_full);
  }
  SECTION("jobs taken from the head make room, a job at a time, and order holds") {
    std::atomic<bool> returned{false};
    JobIntake::Pushed pushed;
    std::thread submitter([&] {
      std::vector<Job> more = jobs(3, 3);
      pushed = intake.push(more, true);
      returned = true;
    });
    // The submitter can only finish if each job taken wakes it: no deadline passes otherwise.
    std::vector<JobId> taken;
    std::vector<Job> refused;
    REQUIRE(eventually([&] {
      if (auto head =
              intake.take_head([](Job&) { return JobIntake::HeadDecision::take; }, refused)) {
        taken.push_back(head->id);
      }
      return returned.load();
    }));
    submitter.join();
    CHECK(pushed.queued == 3);
    CHECK_FALSE(pushed.refusal);
    for (JobId id : drain(intake))
      taken.push_back(id);
    CHECK(taken == std::vector<JobId>{1, 2, 3, 4, 5});
    CHECK(refused.empty());
  }
  SECTION("a pool that stops refuses the waiting submitter") {
    std::atomic<bool> returned{false};
    JobIntake::Pushed pushed;
    std::thread submitter([&] {
      std::vector<Job> more = jobs(3, 1);
      pushed = intake.push(more, true);
      returned = true;
    });
    intake.stop(std::nullopt);
    REQUIRE(eventually([&] { return returned.load(); }));
    submitter.join();
    CHECK(pushed.queued == 0);
    REQUIRE(pushed.refusal);
    CHECK(pushed.refusal->kind == ErrorKind::shutting_down);
    CHECK_FALSE(intake.state().drain_asked);
  }
}

TEST_CASE("a sleeping supervisor thread is woken by a push only when it asked to be") {
  JobIntake intake(100, QueueFullPolicy::reject);
  CHECK_FALSE(woken(intake));
  std::vector<Job> batch = jobs(1, 1);

  SECTION("awake: no wake-up") {
    intake.push(batch, true);
    CHECK_FALSE(woken(intake));
  }
  SECTION("asleep, waking on submit: woken once, and awake after it") {
    REQUIRE(intake.begin_sleep(true, false, true));
    CHECK(intake.state().supervisor_sleeping);
    intake.push(batch, true);
    CHECK(woken(intake));
    CHECK_FALSE(intake.state().supervisor_sleeping);
    std::vector<Job> more = jobs(2, 1);
    intake.push(more, true);
    CHECK_FALSE(woken(intake));
  }
  SECTION("asleep, counting on a result instead: not woken") {
    REQUIRE(intake.begin_sleep(true, false, false));
    intake.push(batch, true);
    CHECK_FALSE(woken(intake));
    intake.end_sleep();
    CHECK_FALSE(intake.state().supervisor_sleeping);
  }
}

TEST_CASE(
    "the supervisor thread may not sleep on queued jobs it could dispatch, nor before a "
    "drain it was asked for has begun") {
  JobIntake intake(100, QueueFullPolicy::reject);
  CHECK(intake.begin_sleep(true, false, true));  // nothing queued
  intake.end_sleep();
  std::vector<Job> batch = jobs(1, 1);
  intake.push(batch, true);
  CHECK_FALSE(intake.begin_sleep(true, false, true));
  CHECK_FALSE(intake.state().supervisor_sleeping);
  CHECK(intake.begin_sleep(false, false, true));  // no worker to give it to
  intake.end_sleep();
  drain(intake);
  intake.stop(std::chrono::milliseconds{100});
  CHECK_FALSE(intake.begin_sleep(true, false, true));
  CHECK(intake.begin_sleep(true, true, true));
}

TEST_CASE("the head is taken, kept, or refused as the caller decides; runs are taken in order") {
  JobIntake intake(100, QueueFullPolicy::reject);
  std::vector<Job> batch = jobs(1, 6);
  REQUIRE(intake.push(batch, true).queued == 6);
  std::vector<Job> refused;
  // Refuse 1 and 2, keep 3: nothing taken.
  auto decide = [](Job& head) {
    return head.id < 3 ? JobIntake::HeadDecision::refuse : JobIntake::HeadDecision::keep;
  };
  CHECK_FALSE(intake.take_head(decide, refused));
  REQUIRE(refused.size() == 2);
  CHECK(refused[0].id == 1);
  CHECK(refused[1].id == 2);
  // A decision may change the job it looks at (the memory budget marks it held).
  std::unique_ptr<Job> head = intake.take_head(
      [](Job& j) {
        j.held_for_memory = true;
        return JobIntake::HeadDecision::take;
      },
      refused);
  REQUIRE(head);
  CHECK(head->id == 3);
  CHECK(head->held_for_memory);
  // Taken while the decision says so: 4 and 5, not 6.
  std::deque<std::unique_ptr<Job>> taken;
  intake.take_while([](const Job& j) { return j.id < 6; }, taken);
  REQUIRE(taken.size() == 2);
  CHECK(taken[0]->id == 4);
  CHECK(taken[1]->id == 5);
  // Returned to the front in their order, ahead of 6.
  CHECK(intake.return_to_front(taken));
  CHECK(taken.empty());
  CHECK(drain(intake) == std::vector<JobId>{4, 5, 6});
}

TEST_CASE("jobs are queued by priority; returned ones go back ahead of their priority's") {
  JobIntake intake(100, QueueFullPolicy::reject);
  auto with_priority = [](JobId id, int priority) {
    Job j = job(id);
    j.options.priority = priority;
    return j;
  };
  // Pushed in one batch and one by one: the batch's jobs are placed each by its own priority.
  std::vector<Job> batch;
  batch.push_back(with_priority(1, 0));
  batch.push_back(with_priority(2, 5));
  batch.push_back(with_priority(3, -2));
  batch.push_back(with_priority(4, 5));
  REQUIRE(intake.push(batch, true).queued == 4);
  std::vector<Job> one;
  one.push_back(with_priority(5, 0));
  REQUIRE(intake.push(one, true).queued == 1);
  // Queue: 2, 4 (5); 1, 5 (0); 3 (-2). Taken as prefetch takes them: 2, 4, 1.
  std::deque<std::unique_ptr<Job>> taken;
  intake.take_while([](const Job& j) { return j.options.priority >= 0 && j.id != 5; }, taken);
  REQUIRE(taken.size() == 3);
  CHECK(taken[0]->id == 2);
  CHECK(taken[1]->id == 4);
  CHECK(taken[2]->id == 1);
  // While they were out, a higher job, another of priority 5 and a lower one came.
  std::vector<Job> meanwhile;
  meanwhile.push_back(with_priority(6, 9));
  meanwhile.push_back(with_priority(7, 5));
  meanwhile.push_back(with_priority(8, -9));
  REQUIRE(intake.push(meanwhile, true).queued == 3);
  // A retry of priority 0 returned on its own first, as a crashed job's would be.
  std::deque<std::unique_ptr<Job>> retry;
  retry.push_back(std::make_unique<Job>(with_priority(9, 0)));
  CHECK(intake.return_to_front(retry));
  // Back ahead of every job of their priority or lower (2 and 4 ahead of 7, 1 ahead of 9 and
  // 5), behind the higher 6, in their order.
  CHECK(intake.return_to_front(taken));
  CHECK(taken.empty());
  CHECK(intake.state().queued == 9);
  CHECK(drain(intake) == std::vector<JobId>{6, 2, 4, 7, 1, 9, 5, 3, 8});
}

TEST_CASE("jobs returned to a degraded pool stay with the caller; removed jobs leave the queue") {
  JobIntake intake(100, QueueFullPolicy::reject);
  std::vector<Job> batch = jobs(1, 3);
  REQUIRE(intake.push(batch, true).queued == 3);
  std::optional<Job> removed = intake.remove(2);
  REQUIRE(removed);
  CHECK(removed->name == "job-2");
  CHECK_FALSE(intake.remove(2));
  intake.set_degraded(true);
  std::deque<std::unique_ptr<Job>> back;
  back.push_back(std::make_unique<Job>(job(7)));
  CHECK_FALSE(intake.return_to_front(back));
  REQUIRE(back.size() == 1);
  CHECK(back[0]->id == 7);
  CHECK(drain(intake) == std::vector<JobId>{1, 3});
}

TEST_CASE("jobs pushed by many threads come out exactly once, each thread's in its order") {
  constexpr int threads = 4;
  constexpr JobId per_thread = 2000;
  JobIntake intake(64, QueueFullPolicy::block);  // small: submitters wait on it often
  std::atomic<int> short_pushes{0};              // Catch's assertions are for the test's own thread
  std::vector<std::thread> submitters;
  for (int t = 0; t < threads; ++t) {
    submitters.emplace_back([&intake, &short_pushes, t] {
      const JobId first = intake.take_ids(per_thread);
      for (JobId i = 0; i < per_thread; i += 10) {
        std::vector<Job> batch = jobs(first + i, 10);
        for (Job& j : batch)
          j.attempts = static_cast<unsigned>(t);  // which thread pushed it
        if (intake.push(batch, true).queued != 10) ++short_pushes;
      }
    });
  }
  std::vector<JobId> last(threads, 0);
  std::size_t seen = 0;
  std::vector<Job> refused;
  REQUIRE(eventually([&] {
    std::deque<std::unique_ptr<Job>> taken;
    intake.take_while([](const Job&) { return true; }, taken);
    for (const auto& j : taken) {
      CHECK(j->id > last[j->attempts]);  // in order per thread, each once
      last[j->attempts] = j->id;
      ++seen;
    }
    return seen == threads * per_thread;
  }));
  for (auto& s : submitters)
    s.join();
  CHECK(short_pushes == 0);
  CHECK(intake.state().queued == 0);
}
