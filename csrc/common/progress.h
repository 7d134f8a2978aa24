// A progress bar for long work: step/total, rate, ETA and a caller-supplied status string.
// On a terminal it redraws one line; otherwise (CI, log files) it prints a plain line at most
// every `interval_s` seconds and at the end.
#pragma once
#include <string>

#include "common/stopwatch.h"

namespace scorch {

class ProgressBar {
 public:
  ProgressBar(std::string label, long total, std::string unit = "step", double interval_s = 10.0);
  // `done` is absolute; `items` counts throughput items (e.g. tokens) since the last call.
  void update(long done, const std::string& status = "", double items = 0.0, const std::string& item_unit = "tok");
  void finish(const std::string& status = "");
  // "1h02m", "3m05s", "12s".
  static std::string format_duration(double seconds);

 private:
  void draw(bool final_line);
  std::string label_, unit_, status_, item_unit_;
  long total_, done_ = 0, start_done_ = -1;
  double items_ = 0.0;
  double interval_s_;
  bool tty_;
  bool enabled_;
  Stopwatch since_start_, since_draw_;
};

}  // namespace scorch
