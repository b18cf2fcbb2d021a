// The pool's job queue: order at both ends, removal from the middle, growth across the ring's
// wrap-around, and nothing lost or left over (each job's outcome sink travels with it).
#include <memory>
#include <vector>

#include "catch.hpp"
#include "job_queue.hpp"

using namespace procpool::detail;

namespace {

Job job(procpool::JobId id) {
  Job j;
  j.id = id;
  j.name = "job-" + std::to_string(id);
  j.payload = procpool::Bytes(id % 7, std::byte{1});
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
