#include "common/progress.h"

#include <unistd.h>

#include <cstdio>
#include <sstream>

#include "common/log.h"

namespace scorch {

ProgressBar::ProgressBar(std::string label, long total, std::string unit, double interval_s)
    : label_(std::move(label)), unit_(std::move(unit)), total_(total), interval_s_(interval_s) {
  tty_ = ::isatty(STDERR_FILENO) == 1;
  enabled_ = log::level() <= log::Level::Info;
}

std::string ProgressBar::format_duration(double s) {
  if (!(s >= 0) || s > 1e8) return "?";
  const long t = static_cast<long>(s + 0.5);
  char buf[32];
  if (t >= 3600) std::snprintf(buf, sizeof buf, "%ldh%02ldm", t / 3600, (t % 3600) / 60);
  else if (t >= 60) std::snprintf(buf, sizeof buf, "%ldm%02lds", t / 60, t % 60);
  else std::snprintf(buf, sizeof buf, "%lds", t);
  return buf;
}

void ProgressBar::update(long done, const std::string& status, double items, const std::string& item_unit) {
  if (start_done_ < 0) start_done_ = done > 0 ? done - 1 : 0;  // resumed runs: rate from here on
  done_ = done;
  status_ = status;
  items_ += items;
  item_unit_ = item_unit;
  const double since = since_draw_.seconds();
  if (tty_ ? since >= 0.2 : (since >= interval_s_ || done_ == total_ || done_ == start_done_ + 1)) {
    since_draw_.restart();
    draw(false);
  }
}

void ProgressBar::finish(const std::string& status) {
  if (!status.empty()) status_ = status;
  draw(true);
}

void ProgressBar::draw(bool final_line) {
  if (!enabled_) return;
  const double elapsed = since_start_.seconds();
  const long steps = done_ - (start_done_ < 0 ? 0 : start_done_);
  const double rate = elapsed > 0 ? steps / elapsed : 0.0;
  const double eta = rate > 0 ? (total_ - done_) / rate : -1;
  std::ostringstream line;
  line << label_ << ' ';
  if (tty_) {
    const int width = 24;
    const int filled = total_ > 0 ? static_cast<int>(width * done_ / total_) : 0;
    line << '[' << std::string(filled, '#') << std::string(width - filled, '.') << "] ";
  }
  line << done_ << '/' << total_ << ' ' << unit_ << 's';
  char buf[96];
  std::snprintf(buf, sizeof buf, " | %.2f %s/s", rate, unit_.c_str());
  line << buf;
  if (items_ > 0 && elapsed > 0) {
    std::snprintf(buf, sizeof buf, " | %.0f %s/s", items_ / elapsed, item_unit_.c_str());
    line << buf;
  }
  line << " | elapsed " << format_duration(elapsed);
  if (!final_line) line << " | ETA " << format_duration(eta);
  if (!status_.empty()) line << " | " << status_;
  if (tty_) {
    std::fprintf(stderr, "\r\033[K%s%s", line.str().c_str(), final_line ? "\n" : "");
  } else {
    std::fprintf(stderr, "%s\n", line.str().c_str());
  }
  std::fflush(stderr);
}

}  // namespace scorch
