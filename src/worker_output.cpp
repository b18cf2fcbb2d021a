#include "worker_output.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace procpool::detail {

void WorkerOutput::take(std::string_view bytes, Clock::time_point now,
                        std::vector<std::string>& to_log) {
  while (!bytes.empty()) {
    const std::size_t room = max_line_bytes - partial_.size();
    const std::size_t newline = bytes.substr(0, room).find('\n');
    if (newline != std::string_view::npos) {
      partial_.append(bytes.substr(0, newline));
      bytes.remove_prefix(newline + 1);
      end_line(now, to_log);
    } else if (bytes.size() >= room) {
      partial_.append(bytes.substr(0, room));  // an over-long line: cut
      bytes.remove_prefix(room);
      end_line(now, to_log);
    } else {
      partial_.append(bytes);
      return;
    }
  }
}

void WorkerOutput::finish(Clock::time_point now, std::vector<std::string>& to_log) {
  if (!partial_.empty()) end_line(now, to_log);
  report_dropped(to_log);
}

void WorkerOutput::end_line(Clock::time_point now, std::vector<std::string>& to_log) {
  if (refilled_at_ != Clock::time_point{}) {
    const double seconds = std::chrono::duration<double>(now - refilled_at_).count();
    tokens_ = std::min(log_burst, tokens_ + seconds * log_lines_per_second);
  }
  refilled_at_ = now;
  if (tokens_ >= 1) {
    tokens_ -= 1;
    report_dropped(to_log);
    to_log.push_back(partial_);
  } else {
    ++dropped_;
    ++dropped_total_;
  }
  if (tail_lines_ > 0) {
    if (tail_.size() == tail_lines_) tail_.pop_front();
    tail_.push_back(std::move(partial_));
  }
  partial_.clear();
}

void WorkerOutput::report_dropped(std::vector<std::string>& to_log) {
  if (dropped_ == 0) return;
  to_log.push_back(fmt::format("({} more line(s) of output not logged: over {:.0f} a second)",
                               dropped_, log_lines_per_second));
  dropped_ = 0;
}

}  // namespace procpool::detail
