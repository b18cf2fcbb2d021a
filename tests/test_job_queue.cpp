// The pool's job queue: order at both ends, removal from the middle, growth across the ring's
// wrap-around, and nothing lost or left over (each job's outcome sink travels with it). Jobs
// queued by priority come out highest first and in their order within one priority, whichever
// side of the ring an insertion shifts.
#include <algorithm>
#include <cstdint>
#include <limits>
#include <memory>
#include <vector>

#include "catch.hpp"
#include "job_queue.hpp"

using namespace procpool::detail;

namespace {

Job job(procpool::JobId id, int priority = 0) {
  Job j;
  j.id = id;
  j.name = "job-" + std::to_string(id);
  j.payload = procpool::Bytes(id % 7, std::byte{1});
  j.options.priority = priority;
  return j;
}

std::vector<procpool::JobId> drain(JobQueue& queue) {
  std::vector<procpool::JobId> ids;
  while (!queue.empty()) {
    Job j = queue.pop_front();
    CHECK(j.name == "job-" + std::to_string(j.id));
    CHECK(j.payload.size() == j.id % 7);
    ids.push_back(j.id);
  }
  return ids;
}

}  // namespace

TEST_CASE("jobs come out in order from both ends, across growth and wrap-around") {
  JobQueue queue;
  // Wrap the head around before growing: pop a few, push past the first capacity.
  for (procpool::JobId id = 0; id < 10; ++id)
    queue.push_back(job(id));
  for (int i = 0; i < 8; ++i)
    queue.pop_front();
  std::vector<procpool::JobId> expected{8, 9};
  for (procpool::JobId id = 10; id < 100; ++id) {
    queue.push_back(job(id));
    expected.push_back(id);
  }
  queue.push_front(job(1000));
  queue.push_front(job(1001));
  expected.insert(expected.begin(), {1001, 1000});
  CHECK(queue.size() == expected.size());
  CHECK(queue.front().id == 1001);
  CHECK(drain(queue) == expected);
  CHECK(queue.empty());
}

TEST_CASE("a job removed by id leaves the others in order; an unknown id removes nothing") {
  JobQueue queue;
  for (procpool::JobId id = 0; id < 20; ++id)
    queue.push_back(job(id));
  queue.pop_front();  // the head is not at slot 0
  std::optional<Job> removed = queue.remove(7);
  REQUIRE(removed);
  CHECK(removed->id == 7);
  CHECK(removed->name == "job-7");
  CHECK_FALSE(queue.remove(7));
  CHECK_FALSE(queue.remove(12345));
  std::vector<procpool::JobId> expected;
  for (procpool::JobId id = 1; id < 20; ++id)
    if (id != 7) expected.push_back(id);
  CHECK(drain(queue) == expected);
}

TEST_CASE("every queued job is destroyed exactly once: with the queue, popped, or swapped out") {
  auto sink_alive = std::make_shared<int>(0);
  {
    JobQueue queue;
    for (procpool::JobId id = 0; id < 3000; ++id) {  // past the size kept when drained
      Job j = job(id);
      j.sink = BatchSink{std::shared_ptr<procpool::BatchCompletion>(sink_alive, nullptr), 0};
      queue.push_back(std::move(j));
    }
    CHECK(sink_alive.use_count() == 3001);
    for (int i = 0; i < 1000; ++i)
      queue.pop_front();
    CHECK(sink_alive.use_count() == 2001);
    JobQueue other;
    other.swap(queue);
    CHECK(queue.empty());
    CHECK(other.size() == 2000);
    CHECK(sink_alive.use_count() == 2001);
  }
  CHECK(sink_alive.use_count() == 1);  // the rest went with the queue
}

namespace {

struct Queued {
  procpool::JobId id;
  int priority;
};

// What a queue that keeps its order would hold after the same insertions: a stable sort by
// priority, highest first, of the jobs in the order they were queued.
std::vector<procpool::JobId> by_priority(std::vector<Queued> queued) {
  std::stable_sort(queued.begin(), queued.end(),
                   [](const Queued& a, const Queued& b) { return a.priority > b.priority; });
  std::vector<procpool::JobId> ids;
  for (const Queued& q : queued)
    ids.push_back(q.id);
  return ids;
}

}  // namespace

TEST_CASE("jobs queued by priority come out highest first, in their order within a priority") {
  JobQueue queue;
  // Low, then high, then mid, then more of each: each lands behind its own priority.
  const std::vector<Queued> queued{{1, 0}, {2, 10}, {3, 5}, {4, 0},  {5, 10},
                                   {6, 5}, {7, 5},  {8, 0}, {9, 10}, {10, 7}};
  for (const Queued& q : queued)
    queue.insert_last_of_priority(job(q.id, q.priority));
  CHECK(queue.size() == queued.size());
  CHECK(queue.front().id == 2);
  CHECK(drain(queue) == std::vector<procpool::JobId>{2, 5, 9, 10, 3, 6, 7, 1, 4, 8});
}

TEST_CASE("negative priorities run after the default one; the extremes of int are priorities") {
  JobQueue queue;
  const int lowest = std::numeric_limits<int>::min();
  const int highest = std::numeric_limits<int>::max();
  const std::vector<Queued> queued{{1, -1}, {2, 0},       {3, lowest}, {4, -5},
                                   {5, 0},  {6, highest}, {7, -1},     {8, lowest}};
  for (const Queued& q : queued)
    queue.insert_last_of_priority(job(q.id, q.priority));
  CHECK(drain(queue) == std::vector<procpool::JobId>{6, 2, 5, 1, 7, 4, 3, 8});
}

TEST_CASE("with one priority, queuing by priority is queuing in order") {
  JobQueue queue;
  std::vector<procpool::JobId> expected;
  for (procpool::JobId id = 0; id < 100; ++id) {
    queue.insert_last_of_priority(job(id, 3));
    expected.push_back(id);
  }
  CHECK(drain(queue) == expected);
}

TEST_CASE("jobs put back go ahead of their own priority and lower, behind higher ones") {
  JobQueue queue;
  for (const Queued& q : std::vector<Queued>{{1, 9}, {2, 5}, {3, 5}, {4, 0}, {5, -3}})
    queue.insert_last_of_priority(job(q.id, q.priority));

  SECTION("each priority: its band's head, after every higher one") {
    // Put back last to first, as JobIntake::return_to_front does: 10 and 11 keep their order.
    queue.insert_first_of_priority(job(11, 5));
    queue.insert_first_of_priority(job(10, 5));
    queue.insert_first_of_priority(job(12, 0));
    queue.insert_first_of_priority(job(13, 20));  // higher than all: the new head
    queue.insert_first_of_priority(job(14, -7));  // lower than all: the back
    queue.insert_first_of_priority(job(15, 9));   // the head's priority: ahead of it
    CHECK(drain(queue) == std::vector<procpool::JobId>{13, 15, 1, 10, 11, 2, 3, 12, 4, 5, 14});
  }
  SECTION("a priority with no job queued: between the higher and the lower ones") {
    queue.insert_first_of_priority(job(10, 7));
    queue.insert_first_of_priority(job(11, -1));
    CHECK(drain(queue) == std::vector<procpool::JobId>{1, 10, 2, 3, 4, 11, 5});
  }
  SECTION("with one priority, putting back is push_front") {
    JobQueue same;
    for (procpool::JobId id = 0; id < 5; ++id)
      same.insert_last_of_priority(job(id));
    same.insert_first_of_priority(job(6));
    same.insert_first_of_priority(job(5));
    CHECK(drain(same) == std::vector<procpool::JobId>{5, 6, 0, 1, 2, 3, 4});
  }
}

TEST_CASE("mixed priorities keep their order across growth, wrap-around and shifts either way") {
  // A deterministic spread of priorities, insertions near both ends and in the middle, with pops
  // between them so that the head moves round the ring while it grows (16 slots, 32, ... 512).
  JobQueue queue;
  std::vector<Queued> model;
  std::uint32_t state = 12345;
  auto next = [&state] {
    state = state * 1103515245u + 12345u;
    return (state >> 16) & 0x7fff;
  };
  procpool::JobId id = 0;
  for (int round = 0; round < 60; ++round) {
    const int pushes = 3 + static_cast<int>(next() % 12);
    for (int i = 0; i < pushes; ++i) {
      const int priority = static_cast<int>(next() % 7) - 3;
      queue.insert_last_of_priority(job(id, priority));
      model.push_back({id, priority});
      ++id;
    }
    const std::vector<procpool::JobId> expected = by_priority(model);
    REQUIRE(queue.size() == expected.size());
    // Pop a few from the head: they are the model's first ones. Every other round they are put
    // back, as jobs a worker never started are, which must leave the queue as it was.
    const std::size_t pops = std::min<std::size_t>(next() % 6, expected.size());
    std::vector<Job> popped;
    for (std::size_t i = 0; i < pops; ++i) {
      popped.push_back(queue.pop_front());
      REQUIRE(popped.back().id == expected[i]);
    }
    if (round % 2 == 0) {
      for (auto it = popped.rbegin(); it != popped.rend(); ++it)
        queue.insert_first_of_priority(std::move(*it));
    } else {
      for (const Job& j : popped) {
        model.erase(std::find_if(model.begin(), model.end(),
                                 [&j](const Queued& q) { return q.id == j.id; }));
      }
    }
    REQUIRE(queue.size() == model.size());
  }
  CHECK(queue.size() > 256);  // it grew past several doublings
  CHECK(drain(queue) == by_priority(model));
}

TEST_CASE("a job removed from the middle of mixed priorities leaves the others in order") {
  JobQueue queue;
  std::vector<Queued> model;
  for (procpool::JobId id = 0; id < 30; ++id) {
    const int priority = static_cast<int>(id % 3);
    queue.insert_last_of_priority(job(id, priority));
    model.push_back({id, priority});
  }
  queue.pop_front();  // the head is not at slot 0
  std::vector<procpool::JobId> expected = by_priority(model);
  expected.erase(expected.begin());
  // 13 has priority 1: in the middle band.
  std::optional<Job> removed = queue.remove(13);
  REQUIRE(removed);
  CHECK(removed->options.priority == 1);
  expected.erase(std::find(expected.begin(), expected.end(), procpool::JobId{13}));
  CHECK_FALSE(queue.remove(13));
  // Queuing by priority still works behind the gap.
  queue.insert_last_of_priority(job(100, 1));
  expected.insert(std::find(expected.begin(), expected.end(), procpool::JobId{0}), 100);
  CHECK(drain(queue) == expected);
}
