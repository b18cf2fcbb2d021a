#include "oom_attribution.hpp"

#include <fmt/format.h>

#include "policy.hpp"

namespace procpool::detail {

OomAttribution::OomAttribution(std::optional<platform::MemoryCgroup> host_cgroup)
    : host_cgroup_(std::move(host_cgroup)) {
  machine_counter_ = !host_cgroup_ || !platform::oom_kill_count(*host_cgroup_);
  explained_ = read_counter();
}

std::optional<std::uint64_t> OomAttribution::read_counter() const {
  return machine_counter_ ? platform::system_oom_kill_count()
                          : platform::oom_kill_count(*host_cgroup_);
}

std::string OomAttribution::shared_limit() const {
  if (host_cgroup_) {
    if (auto limit = platform::effective_memory_limit(*host_cgroup_)) {
      return fmt::format("the memory cgroup {} reached its limit of {}", limit->directory,
                         format_bytes(limit->bytes));
    }
  }
  return "the machine ran out of memory (no cgroup memory limit applies to the host)";
}

OomFinding OomAttribution::explain(const std::optional<CgroupOomReading>& own) {
  OomFinding finding;
  if (own) {
    if (own->oom_kills == 0) {
      finding.verdict = OomFinding::Verdict::not_counted;
    } else {
      finding.verdict = OomFinding::Verdict::oom_killer;
      finding.limit = own->reached_cap ? fmt::format("its memory cgroup {} reached its cap of {}",
                                                     own->directory, format_bytes(own->cap_bytes))
                                       : shared_limit();
    }
    return finding;
  }
  std::optional<std::uint64_t> counted = read_counter();
  if (!counted || !explained_) {
    explained_ = counted;
    return finding;  // unknown
  }
  if (*counted <= *explained_) {
    finding.verdict = OomFinding::Verdict::not_counted;
    return finding;
  }
  ++*explained_;
  finding.verdict = OomFinding::Verdict::oom_killer;
  finding.limit = shared_limit();
  return finding;
}

}  // namespace procpool::detail
