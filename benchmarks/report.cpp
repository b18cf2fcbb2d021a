#include "report.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "bench_util.hpp"

namespace bench {

namespace {

std::string json_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += fmt::format("\\u{:04x}", static_cast<unsigned>(c));
        } else {
          out += c;
        }
    }
  }
  return out;
}

std::string json_num(double v) {
  return std::isfinite(v) ? fmt::format("{}", v) : "null";
}

}  // namespace

double Row::ratio() const {
  if (std::isnan(figure) || std::isnan(baseline) || baseline == 0) return nan_value;
  return figure / baseline;
}

std::string Row::status() const {
  if (target_kind == TargetKind::none) return "info";
  if (std::isnan(figure)) return "n/a";
  switch (target_kind) {
    case TargetKind::ratio_max:
      if (std::isnan(ratio())) return "n/a";
      return ratio() <= target_value ? "met" : "MISSED";
    case TargetKind::ratio_min:
      if (std::isnan(ratio())) return "n/a";
      return ratio() >= target_value ? "met" : "MISSED";
    case TargetKind::abs_min:
      return figure >= target_value ? "met" : "MISSED";
    case TargetKind::abs_max:
      return figure <= target_value ? "met" : "MISSED";
    case TargetKind::none:
      break;
  }
  return "info";
}

void set_target(Row& r, TargetKind kind, double value, std::string text) {
  r.target_kind = kind;
  r.target_value = value;
  r.target_text = std::move(text);
}

Row& Report::add_row(std::string id, std::string section, std::string what, std::string unit,
                     std::vector<double> per_rep) {
  Row r;
  r.id = std::move(id);
  r.section = std::move(section);
  r.what = std::move(what);
  r.unit = std::move(unit);
  r.figure = per_rep.empty() ? nan_value : median(per_rep);
  r.per_rep = std::move(per_rep);
  rows_.push_back(std::move(r));
  return rows_.back();
}

Row& Report::add_row_before(const Row& row, std::string id, std::string section, std::string what,
                            std::string unit, std::vector<double> per_rep) {
  const std::ptrdiff_t at = &row - rows_.data();
  // add_row appends (and may move `row`): then rotate the new row into place before it.
  add_row(std::move(id), std::move(section), std::move(what), std::move(unit), std::move(per_rep));
  std::rotate(rows_.begin() + at, rows_.end() - 1, rows_.end());
  return rows_[static_cast<std::size_t>(at) + 1];
}

const Row* Report::find_row(const std::string& id) const {
  for (const auto& r : rows_) {
    if (r.id == id) return &r;
  }
  return nullptr;
}

double Report::figure_of(const std::string& id) const {
  const Row* r = find_row(id);
  return r != nullptr ? r->figure : nan_value;
}

void Report::set_baseline(Row& r, const std::string& baseline_id) const {
  r.baseline_name = baseline_id;
  r.baseline = figure_of(baseline_id);
}

std::string num(double v) {
  if (std::isnan(v)) return "-";
  double a = std::fabs(v);
  if (a >= 10'000) return fmt::format("{:.0f}", v);
  if (a >= 100) return fmt::format("{:.1f}", v);
  if (a >= 1) return fmt::format("{:.2f}", v);
  if (a == 0) return "0";
  return fmt::format("{:.3g}", v);
}

void print_table(const Report& report, const Config& cfg) {
  std::string line(150, '-');
  fmt::print("\nprocpool-bench ({} mode, {} repetitions, figures are medians), {}\n",
             cfg.quick ? "quick" : "full", cfg.reps, utc_date());
  fmt::print("machine: {} CPUs, {}, kernel {}\n", usable_cpus(), cpu_model(), kernel_release());
  std::string section;
  for (const auto& r : report.rows()) {
    if (r.section != section) {
      section = r.section;
      fmt::print("{}\n{:<70} {:>12} {:>12} {:>8} {:>18} {:>7}\n{}\n", line, section, "figure",
                 "baseline", "ratio", "target", "status", line);
    }
    std::string fig = std::isnan(r.figure) ? "-" : num(r.figure) + " " + r.unit;
    std::string base = std::isnan(r.baseline) ? "-" : num(r.baseline);
    std::string ratio = std::isnan(r.ratio()) ? "-" : fmt::format("{:.2f}x", r.ratio());
    fmt::print("{:<70} {:>12} {:>12} {:>8} {:>18} {:>7}\n", r.what, fig, base, ratio,
               r.target_text.empty() ? "-" : r.target_text, r.status());
  }
  fmt::print("{}\nnotes:\n", line);
  for (const auto& r : report.rows()) {
    if (!r.note.empty()) fmt::print("  {}: {}\n", r.id, r.note);
  }
  if (!report.python_note.empty()) fmt::print("  python: {}\n", report.python_note);
}

void write_json(const Report& report, const Config& cfg, double elapsed_s) {
  const std::vector<Row>& rows = report.rows();
  std::string out = "{\n";
  out += "  \"schema\": 1,\n";
  out += fmt::format("  \"date\": \"{}\",\n", utc_date());
  out += fmt::format("  \"mode\": \"{}\",\n", cfg.quick ? "quick" : "full");
  out += fmt::format("  \"repetitions\": {},\n", cfg.reps);
  out += fmt::format("  \"elapsed_s\": {},\n", json_num(elapsed_s));
  out += fmt::format(
      "  \"machine\": {{\"cpus\": {}, \"cpu_model\": \"{}\", \"kernel\": \"{}\", \"python\": "
      "\"{}\"}},\n",
      usable_cpus(), json_escape(cpu_model()), json_escape(kernel_release()),
      json_escape(report.python_version));
  out += fmt::format("  \"python_note\": \"{}\",\n", json_escape(report.python_note));
  out += "  \"rows\": [\n";
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const Row& r = rows[i];
    std::string reps;
    for (std::size_t k = 0; k < r.per_rep.size(); ++k) {
      reps += (k ? ", " : "") + json_num(r.per_rep[k]);
    }
    out += fmt::format(
        "    {{\"id\": \"{}\", \"section\": \"{}\", \"what\": \"{}\", \"unit\": \"{}\", "
        "\"figure\": {}, \"per_repetition\": [{}], \"baseline_id\": \"{}\", \"baseline\": {}, "
        "\"ratio\": {}, \"target\": \"{}\", \"status\": \"{}\", \"note\": \"{}\"}}{}\n",
        json_escape(r.id), json_escape(r.section), json_escape(r.what), json_escape(r.unit),
        json_num(r.figure), reps, json_escape(r.baseline_name), json_num(r.baseline),
        json_num(r.ratio()), json_escape(r.target_text), r.status(), json_escape(r.note),
        i + 1 < rows.size() ? "," : "");
  }
  out += "  ]\n}\n";
  std::filesystem::path path(cfg.json_path);
  if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path());
  std::ofstream file(path, std::ios::trunc);
  file << out;
  if (!file) throw std::runtime_error("cannot write " + cfg.json_path);
  fmt::print("wrote {}\n", cfg.json_path);
}

void log_progress(const std::string& what) {
  std::fprintf(stderr, "[bench] %s\n", what.c_str());
  std::fflush(stderr);
}

}  // namespace bench
