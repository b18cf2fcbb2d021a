// Jobs the tests run in workers: each misbehaves in one precise way.
#pragma once

#include <procpool/job_registry.hpp>

namespace procpool::test {

/// echo, fail, crash, abort, exit, hang, hang_ignoring_term, sleep_ms, garbage, produce, pid,
/// crash_first_attempt, open_fds, stderr_then_crash, context.
JobRegistry make_test_registry();

}  // namespace procpool::test
