// 16 MiB in and 16 MiB out: copied through the rings (an owning and a copying echo, two ring
// sizes), or written into lent buffers (zero-copy); each against 2 x memcpy timed beside it.
#include <fmt/format.h>

#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench_util.hpp"
#include "measurements.hpp"
#include "pool_harness.hpp"

namespace bench {

namespace {

// The 2 x memcpy baseline again, timed right before each sample of a payload row: the baseline
// measured at the start of the run drifts by up to 1.8x over the minutes until these rows run
// (docs/benchmarks.md), which is as large as what the row is compared for.
class MemcpyBeside {
 public:
  MemcpyBeside() : source_(16 * mib, std::byte{0x5a}), in_(16 * mib), out_(16 * mib) {
    sample_ms();  // the pages exist from here on
  }
  /// 16 MiB copied in, then out again, as an echo job moves it; from a flushed cache.
  double sample_ms() {
    flush_();
    std::int64_t t0 = now_ns();
    std::memcpy(in_.data(), source_.data(), source_.size());
    std::memcpy(out_.data(), in_.data(), in_.size());
    return static_cast<double>(now_ns() - t0) / 1e6;
  }
  void flush_cache() { flush_(); }

 private:
  std::vector<std::byte> source_, in_, out_;
  CacheFlush flush_;
};

// `job`: "owning_echo" returns the payload it owns (JobRegistry::add_owning), "echo" a copy of it.
void measure_payload(const Config& cfg, Report& report, std::size_t ring_bytes,
                     const std::string& job, const std::string& id) {
  log_progress(
      fmt::format("procpool: 16 MiB in + 16 MiB out, ring {} MiB, {}", ring_bytes / mib, job));
  std::vector<double> ms, memcpy_ms;
  {
    procpool::PoolOptions o = pool_options(1);
    o.ring_bytes = ring_bytes;
    procpool::Pool pool(o);
    settle(pool, 1);
    procpool::Bytes source(16 * mib, std::byte{0x5a});
    check_ok(pool.submit(job, procpool::Bytes(source)).get());  // warm-up
    MemcpyBeside beside;
    for (std::size_t rep = 0; rep < cfg.reps; ++rep) {
      std::vector<double> samples, base;
      for (std::size_t i = 0; i < cfg.payload_samples; ++i) {
        procpool::Bytes payload(source);  // copied outside the timed region
        base.push_back(beside.sample_ms());
        beside.flush_cache();
        std::int64_t t0 = now_ns();
        procpool::JobResult r = pool.submit(job, std::move(payload)).get();
        samples.push_back(static_cast<double>(now_ns() - t0) / 1e6);
        check_ok(r);
        if (r.value() != source) throw std::runtime_error(job + " returned other bytes");
      }
      ms.push_back(median(samples));
      memcpy_ms.push_back(median(base));
    }
  }
  const bool owning = job == "owning_echo";
  Row& r =
      report.add_row(id, "procpool",
                     fmt::format("16 MiB in + 16 MiB out ({}), ring_bytes {} MiB",
                                 owning ? "echo owning its payload" : "echo copying its payload",
                                 ring_bytes / mib),
                     "ms", ms);
  if (ring_bytes == (std::size_t{1} << 20) && owning) {
    set_target(r, TargetKind::ratio_max, 2, "<= 2x memcpy");
    r.note =
        "default ring_bytes; the handler (JobRegistry::add_owning) returns the payload it was "
        "given: four copies, into and out of each ring";
  } else if (!owning) {
    r.note = "the handler returns a new Bytes (JobRegistry::add): a fifth copy, in the worker";
  }
  add_memcpy_beside(report, r, std::move(memcpy_ms));
}

}  // namespace

Row& add_memcpy_beside(Report& report, Row& row, std::vector<double> ms, std::string_view copies) {
  const std::string baseline_id = "baseline.memcpy_16MiB_x2.beside." + row.id;
  Row& measured = report.add_row_before(row, baseline_id, row.section,
                                        "2 x memcpy 16 MiB, timed alternately with the row below",
                                        "ms", std::move(ms));
  report.set_baseline(measured, baseline_id);
  if (!measured.note.empty()) measured.note += "; ";
  measured.note += fmt::format(
      "baseline: 2 x memcpy ({}) timed before each sample (the start-of-run figure drifts); each "
      "sample of either from a flushed cache",
      copies);
  double start_of_run = report.figure_of("baseline.memcpy_16MiB_x2");
  if (!std::isnan(start_of_run)) {
    measured.note += fmt::format("; {:.2f}x the start-of-run 2 x memcpy ({:.2f} ms)",
                                 measured.figure / start_of_run, start_of_run);
  }
  return measured;
}

void measure_payloads(const Config& cfg, Report& report) {
  measure_payload(cfg, report, std::size_t{1} << 20, "owning_echo", "procpool.payload_16MiB");
  measure_payload(cfg, report, std::size_t{1} << 20, "echo", "procpool.payload_16MiB_copying_echo");
  measure_payload(cfg, report, std::size_t{32} << 20, "owning_echo",
                  "procpool.payload_16MiB_ring32MiB");
}

// The caller writes 16 MiB into a lent input buffer (timed: it is the first of the two copies the
// baseline makes), the in-place handler copies it into a lent output buffer (the second), and the
// caller gets the size back; the output is read where it lies. Timed on a pool whose workers keep
// lent buffers accessible between jobs, with call_in_place (the target row) and
// submit_in_place().get() (an info row), alternately on the same pool; then, on a pool with the
// default, whose workers take their access away after each job, with its own buffers (an info
// row: interleaved, it slowed the baseline's copies by half). The baseline makes
// the same two copies on the calling thread, from the same source into the same two lent buffers,
// so that they differ only in where the second copy runs and in what procpool does around it;
// each sample of any of them starts from a flushed cache.
void measure_zero_copy(const Config& cfg, Report& report) {
  log_progress("procpool: 16 MiB in + 16 MiB out through lent buffers (call_in_place)");
  std::vector<double> call_ms, submit_ms, revoked_ms, memcpy_ms;
  {
    procpool::PoolOptions kept_options = pool_options(1);
    kept_options.lent_buffers_after_job = procpool::LentBuffersAfterJob::kept_accessible;
    procpool::Pool kept(kept_options);
    procpool::Pool revoking(pool_options(1));
    settle(kept, 1);
    settle(revoking, 1);
    procpool::Bytes source(16 * mib, std::byte{0x5a});
    for (std::size_t i = 0; i < source.size(); i += 4096)
      source[i] = std::byte(i >> 12);
    procpool::LentBuffer input = kept.lend(16 * mib);
    procpool::LentBuffer output = kept.lend(16 * mib);
    const std::span<std::byte> in = input.bytes(), out = output.bytes();
    procpool::LentBuffer revoking_input = revoking.lend(16 * mib);
    procpool::LentBuffer revoking_output = revoking.lend(16 * mib);
    CacheFlush flush;
    // One sample of the job from a flushed cache, its output checked: the output is wiped first,
    // since the baseline (or the job before) left the right bytes in it.
    auto job_ms = [&](procpool::Pool& pool, bool call, const procpool::LentBuffer& job_input,
                      const procpool::LentBuffer& job_output) {
      const std::span<std::byte> job_in = job_input.bytes(), job_out = job_output.bytes();
      std::memset(job_out.data(), 0, job_out.size());
      flush();
      std::int64_t t0 = now_ns();
      std::memcpy(job_in.data(), source.data(), source.size());
      procpool::Result<std::uint64_t> written =
          call ? pool.call_in_place("in_place_echo", job_input, job_output)
               : pool.submit_in_place("in_place_echo", job_input, job_output).get();
      double elapsed = static_cast<double>(now_ns() - t0) / 1e6;
      if (!written.ok())
        throw std::runtime_error("in-place echo failed: " + written.error().message);
      if (written.value() != 16 * mib ||
          std::memcmp(job_out.data(), source.data(), source.size()) != 0) {
        throw std::runtime_error("in-place echo: the output differs from the input");
      }
      return elapsed;
    };
    auto baseline_ms = [&] {
      flush();
      std::int64_t t0 = now_ns();
      std::memcpy(in.data(), source.data(), source.size());
      std::memcpy(out.data(), in.data(), in.size());
      return static_cast<double>(now_ns() - t0) / 1e6;
    };
    // Warm-up: the buffers' pages exist from here on, in all three processes, and each worker's
    // job time is known (it decides whether call_in_place hands the job over directly).
    for (int i = 0; i < 3; ++i) {
      job_ms(kept, true, input, output);
      job_ms(revoking, true, revoking_input, revoking_output);
    }
    for (std::size_t rep = 0; rep < cfg.reps; ++rep) {
      std::vector<double> calls, submits, base;
      for (std::size_t i = 0; i < cfg.payload_samples; ++i) {
        base.push_back(baseline_ms());
        calls.push_back(job_ms(kept, true, input, output));
        submits.push_back(job_ms(kept, false, input, output));
      }
      call_ms.push_back(median(calls));
      submit_ms.push_back(median(submits));
      memcpy_ms.push_back(median(base));
    }
    for (std::size_t rep = 0; rep < cfg.reps; ++rep) {
      std::vector<double> revoked;
      for (std::size_t i = 0; i < cfg.payload_samples; ++i)
        revoked.push_back(job_ms(revoking, true, revoking_input, revoking_output));
      revoked_ms.push_back(median(revoked));
    }
  }
  Row& r = report.add_row("procpool.zero_copy_16MiB", "procpool",
                          "16 MiB in + out through lent buffers (call_in_place)", "ms", call_ms);
  set_target(r, TargetKind::ratio_max, 1.1, "<= 1.1x memcpy");
  r.note =
      "the caller's write into the lent input is timed; the worker maps both buffers once and "
      "keeps them accessible between jobs (LentBuffersAfterJob::kept_accessible); its handler "
      "copies input to output";
  Row& measured = add_memcpy_beside(report, r, std::move(memcpy_ms),
                                    "the same two copies on the calling thread, from the same "
                                    "source into the same lent buffers");
  const std::string baseline_id = measured.baseline_name;
  const Row* handoff_row = report.find_row("baseline.handoff_16MiB");
  const double floor = handoff_row != nullptr ? handoff_row->ratio() : nan_value;
  if (!std::isnan(floor)) {
    measured.note += fmt::format(
        "; the same hand-off with no library (baseline.handoff_16MiB) is {:.2f}x its memcpy",
        floor);
  }
  Row& submitted = report.add_row("procpool.zero_copy_16MiB_submit", "procpool",
                                  "16 MiB in + out through lent buffers (submit_in_place().get())",
                                  "ms", submit_ms);
  report.set_baseline(submitted, baseline_id);
  submitted.note =
      "timed alternately with call_in_place above, on the same pool; baseline: the 2 x memcpy "
      "above it";
  Row& revoked = report.add_row("procpool.zero_copy_16MiB_inaccessible", "procpool",
                                "16 MiB in + out, buffers inaccessible after each job (default)",
                                "ms", revoked_ms);
  report.set_baseline(revoked, baseline_id);
  revoked.note =
      "call_in_place on a second pool with LentBuffersAfterJob::inaccessible (the default), "
      "timed after the rows above, with its own buffers: its worker makes both buffers "
      "inaccessible after each job and accessible again for the next, so each page is touched "
      "anew after its page-table entry changed; baseline: the 2 x memcpy above";
}

}  // namespace bench
