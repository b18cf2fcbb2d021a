// procpool-bench's results: one row per figure, each with its baseline and target, and the table
// and the JSON file they are written as.
#pragma once

#include <limits>
#include <string>
#include <vector>

#include "config.hpp"

namespace bench {

inline constexpr double nan_value = std::numeric_limits<double>::quiet_NaN();

enum class TargetKind { none, ratio_max, ratio_min, abs_min, abs_max };

struct Row {
  std::string id;
  std::string section;
  std::string what;
  std::string unit;
  std::vector<double> per_rep;  // the figure of each repetition
  double figure = nan_value;    // median of per_rep
  std::string baseline_name;
  double baseline = nan_value;
  TargetKind target_kind = TargetKind::none;
  double target_value = nan_value;
  std::string target_text;
  std::string note;

  double ratio() const;
  /// "info" without a target, "n/a" without the figures to judge it, else "met" or "MISSED".
  std::string status() const;
};

void set_target(Row& r, TargetKind kind, double value, std::string text);

/// The rows of one run, in the order they are printed, and what the run says of Python.
class Report {
 public:
  /// Appends a row whose figure is the median of `per_rep` (none if it is empty). The reference
  /// stays valid until the next row is added.
  Row& add_row(std::string id, std::string section, std::string what, std::string unit,
               std::vector<double> per_rep);
  /// Adds a row as add_row does, but just before `row`, and returns `row` (which has moved).
  Row& add_row_before(const Row& row, std::string id, std::string section, std::string what,
                      std::string unit, std::vector<double> per_rep);
  const Row* find_row(const std::string& id) const;
  /// The figure of the row `id`; NaN if there is none.
  double figure_of(const std::string& id) const;
  /// Makes the row `baseline_id` (its figure now) the baseline of `r`.
  void set_baseline(Row& r, const std::string& baseline_id) const;

  const std::vector<Row>& rows() const { return rows_; }

  /// Why the Python baselines are missing or partial; empty if they all ran.
  std::string python_note;
  std::string python_version;

 private:
  std::vector<Row> rows_;
};

/// `v` with as many digits as its size deserves; "-" for NaN.
std::string num(double v);

/// Writes `report` as the table on stdout.
void print_table(const Report& report, const Config& cfg);
/// Writes `report` as JSON to cfg.json_path (benchmarks/results/latest.json's format); throws
/// std::runtime_error if it cannot.
void write_json(const Report& report, const Config& cfg, double elapsed_s);

/// One "[bench] ..." line on stderr: what the run is measuring now.
void log_progress(const std::string& what);

}  // namespace bench
