// A host that starts a pool, occupies every worker with a hanging job, prints
// "<host pid> <worker pid>..." and waits to be killed. test_host_death SIGKILLs it. With the
// argument "grandchildren", each worker first starts a child of its own, the host queues more
// jobs, and a second line lists the grandchildren's pids. With "fork_server", the pool's workers
// are forked by a fork server (StartMode::fork_server).
//
// With "subreaper", it is a child subreaper instead (PR_SET_CHILD_SUBREAPER, as a service manager
// is): it recycles workers a few times, waits until what it is left with is its two workers and
// their two guards (orphans of the workers, so its children), prints "zombies:" and the pids of
// its zombie children, and exits 0 if there were none.
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cstdio>
#include <procpool/procpool.hpp>
#include <set>
#include <sstream>
#include <string_view>
#include <thread>

#include "test_jobs.hpp"
#include "test_support.hpp"

namespace {

int run_subreaper_host() {
  if (::prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) {
    std::perror("procpool_test_host: prctl(PR_SET_CHILD_SUBREAPER)");
    return 2;
  }
  procpool::PoolOptions options = procpool::test::quiet_options(2);
  options.recycle.max_jobs = 1;
  procpool::Pool pool(options);
  std::set<int> retired;
  for (int i = 0; i < 6; ++i) {
    procpool::JobResult r = pool.submit("pid", procpool::Bytes{}).get();
    if (!r.ok()) {
      std::fprintf(stderr, "procpool_test_host: job failed: %s\n", r.error().message.c_str());
      return 2;
    }
    retired.insert(std::stoi(procpool::test::text(r.value())));
  }
  if (!procpool::test::settled(pool, 2)) return 2;
  const int self = static_cast<int>(::getpid());
  // Every retired worker reaped, and its guard gone from the living (it kills its worker's group,
  // itself included, once its worker has died): 2 workers and 2 guards left alive.
  const bool quiet = procpool::test::eventually([&] {
    std::size_t alive = 0;
    for (int child : procpool::test::child_pids(self)) {
      if (retired.count(child) != 0) return false;
      if (procpool::test::process_alive(child)) ++alive;
    }
    return alive == 4;
  });
  if (!quiet) {
    std::fprintf(stderr, "procpool_test_host: never down to 2 workers and 2 guards\n");
    return 2;
  }
  const std::vector<int> zombies = procpool::test::zombie_children(self);
  std::printf("zombies:");
  for (int pid : zombies)
    std::printf(" %d", pid);
  std::printf("\n");
  std::fflush(stdout);
  return zombies.empty() ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  procpool::JobRegistry jobs = procpool::test::make_test_registry();
  if (auto rc = procpool::run_worker_if_requested(argc, argv, jobs)) return *rc;

  const std::string_view mode = argc > 1 ? argv[1] : "";
  if (mode == "subreaper") return run_subreaper_host();
  procpool::PoolOptions options = procpool::test::quiet_options(2);
  if (mode == "fork_server") options.start_mode = procpool::StartMode::fork_server;
  procpool::Pool pool(options);
  // "grandchildren": first give each worker a child of its own (a native library's helper
  // process), and print their pids on a second line.
  const bool grandchildren = mode == "grandchildren";
  std::set<int> workers_with_grandchild;
  std::vector<int> all_grandchildren;
  // Both workers ready first, or every job could go to the one that started sooner.
  auto both_idle = [&] {
    auto stats = pool.stats();
    return stats.workers.size() == 2 && stats.workers[0].state == procpool::WorkerState::idle &&
           stats.workers[1].state == procpool::WorkerState::idle;
  };
  for (int round = 0; grandchildren && workers_with_grandchild.size() < 2; ++round) {
    if (round == 100 || !procpool::test::eventually(both_idle)) {
      std::fprintf(stderr, "procpool_test_host: could not give both workers a grandchild\n");
      return 1;
    }
    auto a = pool.submit("spawn_grandchild", procpool::Bytes{});
    auto b = pool.submit("spawn_grandchild", procpool::Bytes{});
    for (auto* future : {&a, &b}) {
      procpool::JobResult r = future->get();
      if (!r.ok()) {
        std::fprintf(stderr, "procpool_test_host: spawn_grandchild failed: %s\n",
                     r.error().message.c_str());
        return 1;
      }
      std::istringstream fields(procpool::test::text(r.value()));
      int worker = 0, grandchild = 0;
      fields >> worker >> grandchild;
      workers_with_grandchild.insert(worker);
      all_grandchildren.push_back(grandchild);
    }
  }
  std::vector<procpool::JobFuture> running;
  for (int i = 0; i < 2; ++i)
    running.push_back(pool.submit("hang", procpool::Bytes{}));
  bool busy = procpool::test::eventually([&] {
    auto stats = pool.stats();
    return stats.in_flight == 2;
  });
  if (!busy) return 1;
  std::printf("%d", static_cast<int>(::getpid()));
  for (const auto& w : pool.stats().workers)
    std::printf(" %d", w.pid);
  std::printf("\n");
  if (grandchildren) {
    // Load queued behind the hanging jobs: the host dies mid-load.
    for (int i = 0; i < 100; ++i)
      running.push_back(pool.submit("echo", procpool::test::bytes("queued")));
    for (int grandchild : all_grandchildren)
      std::printf("%d ", grandchild);
    std::printf("\n");
  }
  std::fflush(stdout);
  for (;;)
    ::pause();
}
