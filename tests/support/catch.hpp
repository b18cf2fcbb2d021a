// Catch2 2.x (Debian 12) or 3.x, whichever the build found.
#pragma once

#if PROCPOOL_CATCH_MAJOR >= 3
#include <catch2/catch_all.hpp>
#else
#include <catch2/catch.hpp>
#endif

#include <cstdio>
#include <string>

/// Ends the current test as skipped, saying why on stderr and in Catch's report: tests that need
/// what this machine lacks (root, a memory cgroup controller) never pass silently.
#if PROCPOOL_CATCH_MAJOR >= 3
#define PROCPOOL_SKIP(why)                                           \
  do {                                                               \
    std::fprintf(stderr, "SKIPPED: %s\n", std::string(why).c_str()); \
    SKIP(why);                                                       \
  } while (false)
#else
#define PROCPOOL_SKIP(why)                                           \
  do {                                                               \
    std::fprintf(stderr, "SKIPPED: %s\n", std::string(why).c_str()); \
    WARN("SKIPPED: " << (why));                                      \
    return;                                                          \
  } while (false)
#endif
