// Jobs the tests run in workers: each misbehaves in one precise way.
#pragma once

#include <procpool/job_registry.hpp>

namespace procpool::test {

/// echo, fail, crash, abort, exit, hang, hang_ignoring_term, sleep_ms, garbage, produce, pid,
/// crash_first_attempt, open_fds, environ, rlimits, credentials, stderr_then_crash, context,
/// unmap_segment, grandchild_then_die, spawn_grandchild, close_and_exit, glibc_tid,
/// lock_robust_and_exit, pi_mutex_handoff; change_gid, result_after_host_death (test_host_death);
/// in-place: in_place_copy, in_place_throw, in_place_keep_output (+ write_kept_output),
/// in_place_input_mappings (+ lent_mappings).
/// garbage takes its mode as payload: random, length, position, job_id, scribble, whole_segment.
JobRegistry make_test_registry();

}  // namespace procpool::test
