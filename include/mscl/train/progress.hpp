/// \file progress.hpp
/// \brief Progress reporting for long work: a one-line bar with rate and ETA on a terminal,
///        plain periodic log lines otherwise (CI logs, pipes), plus a JSON-lines writer for
///        machine-readable logs.
#pragma once
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "../core/error.hpp"

namespace mscl::train {

class progress_bar {
 public:
  /// total: number of steps; label: what is counted; every: plain-mode line interval (steps).
  progress_bar(long total, std::string label, long every = 10, std::FILE* out = stderr)
      : total_(total), label_(std::move(label)), every_(every > 0 ? every : 1), out_(out),
        tty_(isatty(fileno(out)) != 0), start_(clock::now()) {}

  /// Changes the expected total (a time-budgeted run learns its step count as it goes).
  void set_total(long total) { total_ = total; }
  /// Marks `done` steps finished; `extra` is appended (loss terms and the like).
  void update(long done, const std::string& extra = "") {
    const double elapsed = seconds_since_start();
    const double rate = done > 0 ? double(done) / elapsed : 0.0;
    const double eta = rate > 0 ? double(total_ - done) / rate : 0.0;
    if (tty_) {
      const int width = 28;
      const int filled = total_ > 0 ? int(double(width) * double(done) / double(total_)) : 0;
      std::string bar(std::size_t(filled), '#');
      bar.resize(std::size_t(width), '.');
      std::fprintf(out_, "\r%s [%s] %ld/%ld %.2f/s ETA %s %s\033[K", label_.c_str(), bar.c_str(), done, total_, rate,
                   format_duration(eta).c_str(), extra.c_str());
      if (done >= total_) std::fprintf(out_, "\n");
      std::fflush(out_);
    } else if (done % every_ == 0 || done >= total_) {
      std::fprintf(out_, "%s %ld/%ld (%.0f%%) %.2f/s elapsed %s ETA %s %s\n", label_.c_str(), done, total_,
                   total_ > 0 ? 100.0 * double(done) / double(total_) : 100.0, rate, format_duration(elapsed).c_str(),
                   format_duration(eta).c_str(), extra.c_str());
      std::fflush(out_);
    }
  }
  double seconds_since_start() const { return std::chrono::duration<double>(clock::now() - start_).count(); }
  bool is_terminal() const { return tty_; }

  static std::string format_duration(double s) {
    if (!(s >= 0) || s > 1e7) return "--:--";
    const long t = long(s + 0.5);
    char buf[32];
    if (t >= 3600) std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
    else std::snprintf(buf, sizeof buf, "%02ld:%02ld", t / 60, t % 60);
    return buf;
  }

 private:
  using clock = std::chrono::steady_clock;
  long total_;
  std::string label_;
  long every_;
  std::FILE* out_;
  bool tty_;
  clock::time_point start_;
};

/// Appends one JSON object per line; flushes each line so a killed run keeps its log.
class jsonl_writer {
 public:
  jsonl_writer() = default;
  explicit jsonl_writer(const std::string& path, bool append = true) { open(path, append); }
  void open(const std::string& path, bool append = true) {
    out_.open(path, append ? std::ios::app : std::ios::trunc);
    MSCL_CHECK(out_.good(), io_error, "jsonl_writer: cannot open " << path << " for writing");
    path_ = path;
  }
  bool is_open() const { return out_.is_open(); }
  void write(const nlohmann::json& record) {
    if (!out_.is_open()) return;
    out_ << record.dump() << '\n';
    out_.flush();
    MSCL_CHECK(out_.good(), io_error, "jsonl_writer: write to " << path_ << " failed");
  }

 private:
  std::ofstream out_;
  std::string path_;
};

}  // namespace mscl::train
