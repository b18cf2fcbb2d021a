#include "baselines.hpp"

#include <fcntl.h>
#include <linux/futex.h>
#include <spawn.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>

extern char** environ;

namespace bench {

const char* to_string(PingPongKind kind) noexcept {
  switch (kind) {
    case PingPongKind::pipe:
      return "pipe";
    case PingPongKind::futex:
      return "futex";
    case PingPongKind::eventfd:
      return "eventfd";
    case PingPongKind::spin:
      return "spin";
  }
  return "?";
}

namespace {

// The futex word is shared between two processes (a MAP_SHARED mapping), so no FUTEX_PRIVATE_FLAG.
void futex_wait(std::atomic<std::uint32_t>* word, std::uint32_t expected) {
  syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), FUTEX_WAIT, expected, nullptr, nullptr,
          0);
}

void futex_wake(std::atomic<std::uint32_t>* word) {
  syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), FUTEX_WAKE, 1, nullptr, nullptr, 0);
}

struct alignas(64) SharedWord {
  // Odd: the parent has pinged and waits; even: the child has answered. Wraps harmlessly.
  std::atomic<std::uint32_t> seq{0};
  std::atomic<std::uint32_t> stop{0};
};

void write_all(int fd, const void* data, std::size_t n) {
  if (::write(fd, data, n) != static_cast<ssize_t>(n)) std::abort();
}

void wait_while(const std::atomic<std::uint32_t>& word, std::uint32_t value) {
  while (word.load(std::memory_order_acquire) == value) {
  }
}

double switches(const rusage& usage) {
  return static_cast<double>(usage.ru_nvcsw + usage.ru_nivcsw);
}

void read_all(int fd, void* data, std::size_t n) {
  if (::read(fd, data, n) != static_cast<ssize_t>(n)) std::abort();
}

struct Party {
  int fd_to_child[2] = {-1, -1};  // pipe or eventfd (both ends the same for eventfd)
  int fd_to_parent[2] = {-1, -1};
  SharedWord* word = nullptr;
};

void place(Placement placement, bool child) {
  switch (placement) {
    case Placement::unpinned:
      unpin_self();
      break;
    case Placement::same_core:
      pin_self(0);
      break;
    case Placement::cross_core:
      pin_self(child ? 1 : 0);
      break;
  }
}

}  // namespace

PingPongRun ping_pong(PingPongKind kind, Placement placement, std::size_t n, std::size_t warmup) {
  Party p;
  if (kind == PingPongKind::pipe) {
    if (pipe(p.fd_to_child) != 0 || pipe(p.fd_to_parent) != 0) throw std::runtime_error("pipe");
  } else if (kind == PingPongKind::eventfd) {
    p.fd_to_child[0] = p.fd_to_child[1] = eventfd(0, 0);
    p.fd_to_parent[0] = p.fd_to_parent[1] = eventfd(0, 0);
    if (p.fd_to_child[0] < 0 || p.fd_to_parent[0] < 0) throw std::runtime_error("eventfd");
  } else {  // futex and spin
    void* mem = mmap(nullptr, sizeof(SharedWord), PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) throw std::runtime_error("mmap");
    p.word = new (mem) SharedWord;
  }
  const std::size_t total = warmup + n;

  pid_t child = fork();
  if (child < 0) throw std::runtime_error("fork");
  if (child == 0) {
    place(placement, true);
    for (std::size_t i = 0; i < total; ++i) {
      if (kind == PingPongKind::futex) {
        std::uint32_t want = static_cast<std::uint32_t>(2 * i + 1);
        while (p.word->seq.load(std::memory_order_acquire) != want) {
          futex_wait(&p.word->seq, static_cast<std::uint32_t>(2 * i));
        }
        p.word->seq.store(want + 1, std::memory_order_release);
        futex_wake(&p.word->seq);
      } else if (kind == PingPongKind::spin) {
        auto want = static_cast<std::uint32_t>(2 * i + 1);
        wait_while(p.word->seq, want - 1);
        p.word->seq.store(want + 1, std::memory_order_release);
      } else if (kind == PingPongKind::pipe) {
        char c;
        read_all(p.fd_to_child[0], &c, 1);
        write_all(p.fd_to_parent[1], &c, 1);
      } else {
        std::uint64_t v;
        read_all(p.fd_to_child[0], &v, sizeof v);
        v = 1;
        write_all(p.fd_to_parent[1], &v, sizeof v);
      }
    }
    _exit(0);
  }

  place(placement, false);
  rusage self_before{};
  getrusage(RUSAGE_SELF, &self_before);
  PingPongRun run;
  run.rtt_ns.reserve(n);
  std::int64_t loop_start = 0;
  for (std::size_t i = 0; i < total; ++i) {
    if (i == warmup) loop_start = now_ns();
    std::int64_t t0 = now_ns();
    if (kind == PingPongKind::futex) {
      std::uint32_t ping = static_cast<std::uint32_t>(2 * i + 1);
      p.word->seq.store(ping, std::memory_order_release);
      futex_wake(&p.word->seq);
      while (p.word->seq.load(std::memory_order_acquire) == ping)
        futex_wait(&p.word->seq, ping);
    } else if (kind == PingPongKind::spin) {
      auto ping = static_cast<std::uint32_t>(2 * i + 1);
      p.word->seq.store(ping, std::memory_order_release);
      wait_while(p.word->seq, ping);
    } else if (kind == PingPongKind::pipe) {
      char c = 'x';
      write_all(p.fd_to_child[1], &c, 1);
      read_all(p.fd_to_parent[0], &c, 1);
    } else {
      std::uint64_t v = 1;
      write_all(p.fd_to_child[1], &v, sizeof v);
      read_all(p.fd_to_parent[0], &v, sizeof v);
    }
    std::int64_t t1 = now_ns();
    if (i >= warmup) run.rtt_ns.push_back(static_cast<double>(t1 - t0));
  }
  run.elapsed_ns = static_cast<double>(now_ns() - loop_start);
  rusage self_after{}, child_usage{};
  getrusage(RUSAGE_SELF, &self_after);
  int status = 0;
  wait4(child, &status, 0, &child_usage);
  run.switches_per_round_trip =
      (switches(self_after) - switches(self_before) + switches(child_usage)) /
      static_cast<double>(total);
  unpin_self();

  if (kind == PingPongKind::pipe) {
    for (int fd : {p.fd_to_child[0], p.fd_to_child[1], p.fd_to_parent[0], p.fd_to_parent[1]}) {
      close(fd);
    }
  } else if (kind == PingPongKind::eventfd) {
    close(p.fd_to_child[0]);
    close(p.fd_to_parent[0]);
  } else {
    munmap(p.word, sizeof(SharedWord));
  }
  return run;
}

HandoffRun handoff(std::size_t bytes, std::size_t samples) {
  struct alignas(64) Words {
    std::atomic<std::uint32_t> request{0};  // the parent's count of samples handed over
    std::atomic<std::uint32_t> reply{0};    // the child's count of samples done
  };
  const std::size_t words_at = 2 * bytes;
  void* mem = mmap(nullptr, words_at + sizeof(Words), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) throw std::runtime_error("mmap");
  auto* in = static_cast<char*>(mem);
  char* out = in + bytes;
  auto* words = new (in + words_at) Words;
  std::memset(in, 0, 2 * bytes);  // the pages exist, in both processes, from here on
  std::vector<char> source(bytes, 'h');
  CacheFlush flush;  // allocated before the fork: nothing after it may throw before the child ends
  HandoffRun run;
  run.handoff_ms.reserve(samples);
  run.memcpy_ms.reserve(samples);
  const std::uint32_t stop = 0xffffffffu;

  pid_t child = fork();
  if (child < 0) {
    munmap(mem, words_at + sizeof(Words));
    throw std::runtime_error("fork");
  }
  if (child == 0) {
    for (std::uint32_t done = 0;;) {
      std::uint32_t asked;
      while ((asked = words->request.load(std::memory_order_acquire)) == done)
        futex_wait(&words->request, done);
      if (asked == stop) _exit(0);
      std::memcpy(out, in, bytes);
      done = asked;
      words->reply.store(done, std::memory_order_release);
      futex_wake(&words->reply);
    }
  }

  for (std::uint32_t i = 1; i <= samples + 1; ++i) {  // the first of each warms up
    source[i % bytes] = static_cast<char>(i);
    flush();
    std::int64_t t0 = now_ns();
    std::memcpy(in, source.data(), bytes);
    std::memcpy(out, in, bytes);
    double both = static_cast<double>(now_ns() - t0) / 1e6;
    std::memset(out, 0, bytes);
    flush();
    t0 = now_ns();
    std::memcpy(in, source.data(), bytes);
    words->request.store(i, std::memory_order_release);
    futex_wake(&words->request);
    while (words->reply.load(std::memory_order_acquire) != i)
      futex_wait(&words->reply, i - 1);
    double handed = static_cast<double>(now_ns() - t0) / 1e6;
    if (std::memcmp(out, source.data(), bytes) != 0) std::abort();
    if (i == 1) continue;
    run.memcpy_ms.push_back(both);
    run.handoff_ms.push_back(handed);
  }
  words->request.store(stop, std::memory_order_release);
  futex_wake(&words->request);
  waitpid(child, nullptr, 0);
  munmap(mem, words_at + sizeof(Words));
  return run;
}

std::vector<double> memcpy_ns(std::size_t bytes, std::size_t samples) {
  std::vector<char> src(bytes, 'a');
  std::vector<char> dst(bytes, 'b');
  std::vector<double> out;
  for (std::size_t i = 0; i < samples + 1; ++i) {
    src[i % bytes] = static_cast<char>(i);
    std::int64_t t0 = now_ns();
    std::memcpy(dst.data(), src.data(), bytes);
    std::int64_t t1 = now_ns();
    // Keep the copy observable so it is not optimised away.
    if (dst[i % bytes] != src[i % bytes]) std::abort();
    if (i > 0) out.push_back(static_cast<double>(t1 - t0));  // the first one warms the caches
  }
  return out;
}

std::vector<double> spawn_to_ready_ns(const std::string& self_exe, std::size_t samples) {
  std::vector<double> out;
  for (std::size_t i = 0; i < samples; ++i) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
    std::string arg0 = self_exe;
    std::string arg1 = "--bench-spawn-child";
    char* argv[] = {arg0.data(), arg1.data(), nullptr};
    std::int64_t t0 = now_ns();
    pid_t pid = -1;
    int rc = posix_spawn(&pid, self_exe.c_str(), &actions, nullptr, argv, environ);
    posix_spawn_file_actions_destroy(&actions);
    close(fds[1]);
    if (rc != 0) {
      close(fds[0]);
      throw std::runtime_error("posix_spawn");
    }
    char c = 0;
    bool got = ::read(fds[0], &c, 1) == 1;
    std::int64_t t1 = now_ns();
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    if (got) out.push_back(static_cast<double>(t1 - t0));
  }
  return out;
}

int spawn_child_main() {
  char c = 'r';
  return ::write(1, &c, 1) == 1 ? 0 : 1;
}

}  // namespace bench
