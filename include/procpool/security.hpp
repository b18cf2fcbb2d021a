// WorkerSecurity: what a worker process may do and see (its environment, resource limits, user and
// privileges). Part of PoolOptions (options.hpp); the trust boundary and the recommended settings
// are in docs/security.md.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace procpool {

/// Where a worker's environment variables come from.
enum class EnvironmentMode {
  /// Every variable of the host, as it is when the worker is spawned (what a child process gets by
  /// default, and what a worker that needs credentials from the environment expects).
  inherit,
  /// Only the host's variables named in WorkerEnvironment::allow, plus WorkerEnvironment::set.
  allow_list,
};

/// The environment a worker starts with. Applied when each worker is spawned; the variables are
/// read from the host at that moment (do not setenv() in the host while a pool may be spawning).
struct WorkerEnvironment {
  /// inherit (default) or allow_list.
  EnvironmentMode mode = EnvironmentMode::inherit;
  /// With allow_list: the host variables a worker gets, if the host has them. A name ending in '*'
  /// is a prefix ("AZURE_SPEECH_*"). Ignored with inherit.
  std::vector<std::string> allow = {"PATH",   "HOME",     "LANG",        "LANGUAGE",
                                    "LC_ALL", "LC_CTYPE", "LC_MESSAGES", "TZ",
                                    "TMPDIR", "USER",     "LOGNAME"};
  /// Set in every worker, in either mode, over any value the host has: {name, value}. Names must
  /// be unique, non-empty and without '='; names and values without NUL characters.
  std::vector<std::pair<std::string, std::string>> set;
};

/// The user and group a worker runs as (PoolOptions requires a host running as root for this).
struct RunAs {
  /// The user id the worker runs as (setuid in the child, before exec).
  std::uint32_t uid = 0;
  /// The group id the worker runs as (setgid, with no supplementary groups).
  std::uint32_t gid = 0;
};

/// What a worker process may do and see. The defaults change nothing: a worker runs as the host's
/// user, with its environment and its resource limits. Everything here is applied in the child
/// between fork and exec, before any of the worker's code runs, and a worker cannot undo it.
/// See docs/security.md for the trust boundary and the recommended settings.
/// (RLIMIT_AS is RecyclePolicy::address_space_limit.)
struct WorkerSecurity {
  /// The variables a worker starts with.
  WorkerEnvironment environment;

  /// RLIMIT_NOFILE (soft and hard) for each worker: it cannot open a descriptor numbered at or
  /// above this. 0 (default) = inherit the host's. Allowed: 0 or 16 .. the host's hard limit
  /// (above it only when the host runs as root).
  std::uint64_t max_open_files = 0;

  /// RLIMIT_CORE (soft and hard) for each worker, in bytes. nullopt (default) = inherit the
  /// host's. 0 = no core dump, so payloads never land on disk through one: recommended wherever
  /// they are sensitive. Allowed: up to the host's hard limit (above it only for a root host).
  std::optional<std::uint64_t> core_dump_limit;

  /// Run each worker as this user and group, with no supplementary groups. nullopt (default): the
  /// host's. Only a host running as root (effective uid 0) may set it; the Pool constructor throws
  /// ConfigError otherwise. The worker's executable must be executable by that user; a spawn
  /// whose drop fails is a start failure. See docs/security.md, "run_as".
  std::optional<RunAs> run_as;

  /// PR_SET_NO_NEW_PRIVS: neither the worker nor anything it executes can gain privileges
  /// (set-user-ID binaries, file capabilities). Default false.
  bool no_new_privileges = false;

  /// false: the worker clears PR_SET_DUMPABLE before its first job: no core dump, and other
  /// processes of its user (sibling workers included) can no longer ptrace it or read it through
  /// /proc. A host that is not root cannot then combine it with MemoryMetric::pss or uss
  /// (ConfigError). Default true (as any process). See docs/security.md, "dumpable".
  bool dumpable = true;
};

}  // namespace procpool
