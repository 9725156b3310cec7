// Implements kick::Progress and the clock helpers: the progress-with-ETA line every long run prints.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "kick/core.hpp"

namespace kick {

double monotonic_seconds() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

std::string format_duration(double s) {
  if (s < 0 || s != s) return "?";
  if (s < 60) return fmt::format("{:.1f}s", s);
  auto total = static_cast<int64_t>(s + 0.5);
  if (total < 3600) return fmt::format("{}m{:02d}s", total / 60, total % 60);
  return fmt::format("{}h{:02d}m", total / 3600, (total % 3600) / 60);
}

Progress::Progress(std::string label, int64_t total, std::string unit)
    : label_(std::move(label)), unit_(std::move(unit)), total_(total), start_(monotonic_seconds()),
      tty_(::isatty(STDERR_FILENO) == 1) {}

double Progress::elapsed_seconds() const { return monotonic_seconds() - start_; }

void Progress::update(int64_t done) {
  done_ = done;
  const double now = monotonic_seconds();
  const bool last = done_ >= total_;
  if (!last && now - last_print_ < (tty_ ? 0.2 : 5.0)) return;
  last_print_ = now;
  const double elapsed = now - start_;
  const double eta = done_ > 0 ? elapsed * double(total_ - done_) / double(done_) : -1;
  const double pct = total_ > 0 ? 100.0 * double(done_) / double(total_) : 100.0;
  std::string line = fmt::format("{} {}/{}{}{} ({:.0f}%) elapsed {} ETA {}", label_, done_, total_,
                                 unit_.empty() ? "" : " ", unit_, pct, format_duration(elapsed),
                                 last ? "0s" : format_duration(eta));
  std::fprintf(stderr, tty_ ? "\r%s\033[K" : "%s\n", line.c_str());
  if (last && tty_) std::fprintf(stderr, "\n");
  std::fflush(stderr);
  if (last) finished_ = true;
}

void Progress::finish() {
  if (!finished_) update(total_);
}

std::filesystem::path cache_root() {
  if (const char* env = std::getenv("KICK_CACHE"); env && *env) return env;
  const char* home = std::getenv("HOME");
  return std::filesystem::path(home && *home ? home : "/tmp") / ".cache" / "kick";
}

}  // namespace kick
