#include "reporter.hpp"

#include <fmt/format.h>

#include <cstdio>
#include <utility>

namespace procpool::detail {

thread_local const Reporter* Reporter::deferring_ = nullptr;

Reporter::Reporter(LogSink log, EventCallback on_event)
    : log_(std::move(log)), on_event_(std::move(on_event)) {}

void Reporter::log(LogLevel level, const std::string& line) const noexcept {
  std::optional<PoolEvent> no_event;
  if (defer(level, line, no_event)) return;
  try {
    if (log_) {
      log_(level, line);
    } else if (level != LogLevel::debug) {
      std::fprintf(stderr, "procpool: %s\n", line.c_str());
    }
  } catch (...) {
    // A log sink that throws loses its line, nothing else.
  }
}

void Reporter::emit(PoolEvent event, LogLevel level) const noexcept {
  if (deferring_ == this) {
    std::optional<PoolEvent> kept(event);
    if (defer(level, event.message, kept)) return;
  }
  log(level, event.message);
  if (!on_event_) return;
  try {
    on_event_(event);
  } catch (const std::exception& e) {
    log(LogLevel::error, fmt::format("the event callback threw: {}", e.what()));
  } catch (...) {
    log(LogLevel::error, "the event callback threw a non-std::exception");
  }
}

Reporter::Deferral::Deferral(const Reporter& reporter) noexcept : previous_(deferring_) {
  deferring_ = &reporter;
}

Reporter::Deferral::~Deferral() {
  deferring_ = previous_;
}

bool Reporter::defer(LogLevel level, const std::string& line,
                     std::optional<PoolEvent>& event) const noexcept {
  if (deferring_ != this) return false;
  try {
    std::lock_guard lock(deferred_mutex_);
    deferred_.push_back(Deferred{level, line, std::move(event)});
    has_deferred_.store(true, std::memory_order_release);
    return true;
  } catch (...) {
    return false;  // no memory to keep it: emitted here rather than not at all
  }
}

void Reporter::emit_deferred() noexcept {
  std::vector<Deferred> pending;
  {
    std::lock_guard lock(deferred_mutex_);
    pending.swap(deferred_);
    has_deferred_.store(false, std::memory_order_release);
  }
  for (Deferred& d : pending) {
    if (d.event) {
      emit(std::move(*d.event), d.level);
    } else {
      log(d.level, d.line);
    }
  }
}

void Reporter::count(const JobResult& result) noexcept {
  if (result.ok()) {
    succeeded_.fetch_add(1, std::memory_order_relaxed);
  } else {
    failed_by_kind_[static_cast<std::size_t>(result.error().kind)].fetch_add(
        1, std::memory_order_relaxed);
  }
}

void Reporter::fill(PoolStats& stats) const noexcept {
  stats.submitted = submitted_.load();
  stats.succeeded = succeeded_.load();
  for (std::size_t i = 0; i < error_kind_count; ++i) {
    stats.failed_by_kind[i] = failed_by_kind_[i].load();
    stats.failed += stats.failed_by_kind[i];
  }
  stats.retries = retries_.load();
}

}  // namespace procpool::detail
