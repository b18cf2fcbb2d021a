#include "procpool/future.hpp"

#include "platform/platform.hpp"

namespace procpool::detail {

using platform::FutexScope;

void OutcomeState::set(JobResult result) noexcept {
  result_.emplace(std::move(result));
  // Release: a thread that sees ready_bit sees result_. The kernel is called only if a thread
  // sleeps on the word (or is about to: it sets sleeper_bit before it sleeps).
  if (word_.fetch_or(ready_bit, std::memory_order_acq_rel) & sleeper_bit) {
    platform::futex_wake_all(word_, FutexScope::process_private);
  }
}

void OutcomeState::sleep(std::optional<std::chrono::nanoseconds> timeout) const noexcept {
  std::uint32_t word = word_.fetch_or(sleeper_bit, std::memory_order_acquire) | sleeper_bit;
  // If set() ran in between, the word is not sleeper_bit alone and the kernel returns at once.
  if (!(word & ready_bit)) platform::futex_wait(word_, word, timeout, FutexScope::process_private);
}

void OutcomeState::wait() const noexcept {
  while (!ready())
    sleep(std::nullopt);
}

bool OutcomeState::wait_for(std::chrono::nanoseconds timeout) const noexcept {
  if (ready()) return true;
  if (timeout == std::chrono::nanoseconds::max()) {
    wait();
    return true;
  }
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto left = deadline - std::chrono::steady_clock::now();
    if (left <= left.zero()) return ready();
    sleep(std::chrono::ceil<std::chrono::nanoseconds>(left));
    if (ready()) return true;
  }
}

}  // namespace procpool::detail
