// A host that starts a pool, occupies every worker with a hanging job, prints
// "<host pid> <worker pid>..." and waits to be killed. test_host_death SIGKILLs it. With the
// argument "grandchildren", each worker first starts a child of its own, the host queues more
// jobs, and a second line lists the grandchildren's pids. With "fork_server", the pool's workers
// are forked by a fork server (StartMode::fork_server). With "clear_pdeathsig" (or
// "fork_server+clear_pdeathsig"), each worker instead runs a job that changes its gid, which
// clears its parent-death signal, and is left idle; a second line, "pdeathsig <a> <b>", gives the
// workers' parent-death signals after the change. With "clear_pdeathsig_streaming" (or
// "fork_server+clear_pdeathsig_streaming"), each worker then runs a job whose result, larger than
// the ring, comes once the host is gone; with "clear_pdeathsig_running" (or
// "fork_server+clear_pdeathsig_running"), a job that never returns.
//
// With "subreaper", it is a child subreaper instead (PR_SET_CHILD_SUBREAPER, as a service manager
// is): it recycles workers a few times, waits until what it is left with is its two workers and
// their two guards (orphans of the workers, so its children), prints "zombies:" and the pids of
// its zombie children, and exits 0 if there were none.
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cstdio>
#include <map>
#include <procpool/procpool.hpp>
#include <set>
#include <sstream>
#include <string>
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

// Both workers ready, before jobs meant one for each: or every job could go to the one that
// started sooner.
bool both_idle(procpool::Pool& pool) {
  auto stats = pool.stats();
  return stats.workers.size() == 2 && stats.workers[0].state == procpool::WorkerState::idle &&
         stats.workers[1].state == procpool::WorkerState::idle;
}

// Has each of the two workers run "change_gid" (to nobody's gid, 65534), then `next_job` (none if
// empty) until the host is killed; prints the two lines and waits to be killed.
int clear_pdeathsig_and_wait(procpool::Pool& pool, const std::string& next_job) {
  std::map<int, std::string> signal_by_worker;
  for (int round = 0; signal_by_worker.size() < 2; ++round) {
    if (round == 100 || !procpool::test::eventually([&] { return both_idle(pool); })) {
      std::fprintf(stderr, "procpool_test_host: could not run change_gid on both workers\n");
      return 1;
    }
    auto a = pool.submit("change_gid", procpool::test::encode_value(std::uint32_t{65534}));
    auto b = pool.submit("change_gid", procpool::test::encode_value(std::uint32_t{65534}));
    for (auto* future : {&a, &b}) {
      procpool::JobResult r = future->get();
      if (!r.ok()) {
        std::fprintf(stderr, "procpool_test_host: change_gid failed: %s\n",
                     r.error().message.c_str());
        return 1;
      }
      std::istringstream fields(procpool::test::text(r.value()));
      int worker = 0;
      std::string signal;
      fields >> worker >> signal;
      signal_by_worker[worker] = signal;
    }
  }
  if (!procpool::test::eventually([&] { return both_idle(pool); })) return 1;
  std::vector<procpool::JobFuture> running;
  if (!next_job.empty()) {
    for (int i = 0; i < 2; ++i)
      running.push_back(pool.submit(next_job, procpool::Bytes{}));
    if (!procpool::test::eventually([&] { return pool.stats().in_flight == 2; })) return 1;
  }
  std::printf("%d", static_cast<int>(::getpid()));
  for (const auto& [worker, signal] : signal_by_worker)
    std::printf(" %d", worker);
  std::printf("\npdeathsig");
  for (const auto& [worker, signal] : signal_by_worker)
    std::printf(" %s", signal.c_str());
  std::printf("\n");
  std::fflush(stdout);
  for (;;)
    ::pause();
}

}  // namespace

int main(int argc, char** argv) {
  procpool::JobRegistry jobs = procpool::test::make_test_registry();
  if (auto rc = procpool::run_worker_if_requested(argc, argv, jobs)) return *rc;

  const std::string_view mode = argc > 1 ? argv[1] : "";
  if (mode == "subreaper") return run_subreaper_host();
  procpool::PoolOptions options = procpool::test::quiet_options(2);
  if (mode.starts_with("fork_server")) options.start_mode = procpool::StartMode::fork_server;
  procpool::Pool pool(options);
  // "grandchildren": first give each worker a child of its own (a native library's helper
  // process), and print their pids on a second line.
  const bool grandchildren = mode == "grandchildren";
  std::set<int> workers_with_grandchild;
  std::vector<int> all_grandchildren;
  for (int round = 0; grandchildren && workers_with_grandchild.size() < 2; ++round) {
    if (round == 100 || !procpool::test::eventually([&] { return both_idle(pool); })) {
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
  if (mode.find("clear_pdeathsig") != std::string_view::npos) {
    const std::string next_job = mode.ends_with("_streaming") ? "result_after_host_death"
                                 : mode.ends_with("_running") ? "hang"
                                                              : "";
    return clear_pdeathsig_and_wait(pool, next_job);
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
