/// \file annotations.hpp
/// \brief Parsers and writers for the annotation files video users already have (ECOSYSTEM.md
///        §1.2, §1.4–§1.6): MMAction2 rawframe/video lists, UCF101 and HMDB51 official split files,
///        Something-Something v2 JSON; plus the writer of mmaction's
///        `<dataset>_{train,val}_split_<k>_{rawframes,videos}.txt` lists.
///
/// Every parser returns plain structs and throws `mscl::io_error` for a malformed line with a
/// message of the form `FUNCTION: FILE:LINE: what was expected; got 'TEXT'`, so that a bad line in
/// a 13,000-line list is found at once. Lines are split on spaces and tabs; trailing blanks, `\r`
/// (the UCF101 files are CRLF), a UTF-8 byte-order mark, a missing final newline and blank lines
/// are tolerated. Numbers are decimal without sign; a negative number or one with trailing junk
/// ("12a") is an error, never silently truncated.
///
/// Labels are 0-based everywhere (mmaction's convention); the UCF101 files' 1-based ids are
/// converted and range-checked against classInd.txt.
#pragma once
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <istream>
#include <map>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/error.hpp"
#include "../io/atomic_file.hpp"

namespace mscl::data {

// ------------------------------------------------------------------------------------------ types

/// One line of a rawframe list: `frame_dir [offset] total_frames label [label...]`.
struct rawframe_entry {
  std::string frame_dir;       ///< relative to the rawframes root, e.g. `ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01`
  std::int64_t offset = 0;     ///< first frame (0 unless the list is `with_offset`)
  std::int64_t total_frames = 0;
  std::vector<int> labels;     ///< one label unless the list is multi-label
  int line = 0;                ///< 1-based line in the source file (0 when built in memory)
  int label() const { return labels.empty() ? -1 : labels.front(); }
};

/// One line of a video list `path label [label...]`, also the result of the split-file parsers.
struct video_entry {
  std::string path;            ///< e.g. `ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi`
  std::vector<int> labels;
  int line = 0;
  int label() const { return labels.empty() ? -1 : labels.front(); }
};

/// Options of the rawframe/video list parsers (mmaction's `with_offset` and `multi_class`).
struct list_options {
  bool with_offset = false;  ///< rawframe lists only: `frame_dir offset total_frames label...`
  bool multi_label = false;  ///< accept several labels per line; otherwise exactly one
};

/// Class names in label order (index = 0-based label). Lookup is case-insensitive because the
/// UCF101 files spell one class two ways (`HandstandPushups` / `v_HandStandPushups_...`).
struct class_index {
  std::vector<std::string> names;

  int size() const { return int(names.size()); }
  /// Label of `name` (ASCII case-insensitive), or -1.
  int find(std::string_view name) const {
    for (std::size_t i = 0; i < names.size(); ++i) {
      const std::string& s = names[i];
      if (s.size() == name.size() &&
          std::equal(s.begin(), s.end(), name.begin(), [](char a, char b) {
            return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b));
          }))
        return int(i);
    }
    return -1;
  }
};

/// A train/test split of one dataset (UCF101, HMDB51).
struct dataset_split {
  class_index classes;
  std::vector<video_entry> train, test;
  std::size_t unused = 0;  ///< HMDB51 clips flagged 0 (in no set of this split)
};

/// One Something-Something v2 item. `label` is -1 for the test file.
struct ssv2_entry {
  std::string id;
  int label = -1;
  std::string template_text;          ///< with brackets stripped ("Holding something next to something")
  std::string label_text;             ///< the filled-in sentence, when present
  std::vector<std::string> placeholders;
};

// ------------------------------------------------------------------------------------------ lexing

namespace detail {

/// Splits one line on spaces/tabs, dropping `\r` and other trailing blanks.
inline std::vector<std::string_view> split_fields(std::string_view line) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  auto blank = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'; };
  while (i < line.size()) {
    while (i < line.size() && blank(line[i])) ++i;
    const std::size_t b = i;
    while (i < line.size() && !blank(line[i])) ++i;
    if (i > b) out.push_back(line.substr(b, i - b));
  }
  return out;
}

/// Text of a line for an error message: without `\r`, shortened when very long.
inline std::string quote_line(std::string_view line) {
  std::string s(line);
  while (!s.empty() && (s.back() == '\r' || s.back() == '\n')) s.pop_back();
  if (s.size() > 200) s = s.substr(0, 200) + "...";
  return s;
}

/// Reads lines of `in`, numbering them from 1, stripping a BOM on line 1 and skipping blank lines.
template <class F>
void for_each_line(std::istream& in, F&& f) {
  std::string line;
  int number = 0;
  while (std::getline(in, line)) {
    ++number;
    std::string_view view(line);
    if (number == 1 && view.size() >= 3 && view.substr(0, 3) == "\xEF\xBB\xBF") view.remove_prefix(3);
    const std::vector<std::string_view> fields = split_fields(view);
    if (fields.empty()) continue;
    f(number, view, fields);
  }
}

/// Opens a text file or throws io_error naming it.
inline std::ifstream open_text(const std::string& path, const char* who) {
  std::ifstream in(path, std::ios::binary);
  MSCL_CHECK(in.good(), io_error, who << ": cannot open '" << path << "': " << std::strerror(errno));
  return in;
}

[[noreturn]] inline void line_error(const char* who, const std::string& source, int line, const std::string& what,
                                    std::string_view text) {
  std::ostringstream os;
  os << who << ": " << source << ":" << line << ": " << what << "; got '" << quote_line(text) << "'";
  throw io_error(os.str());
}

/// Non-negative decimal integer (no sign, no junk); throws io_error naming file:line and `field`.
inline std::int64_t parse_count(std::string_view s, const char* who, const std::string& source, int line,
                                std::string_view text, const char* field) {
  std::int64_t v = 0;
  const char* b = s.data();
  const char* e = s.data() + s.size();
  if (!s.empty() && s.front() == '-') {
    std::int64_t neg = 0;
    const auto r = std::from_chars(b, e, neg);
    if (r.ec == std::errc() && r.ptr == e)
      line_error(who, source, line, std::string(field) + " must be >= 0, got " + std::string(s), text);
  }
  const auto r = std::from_chars(b, e, v);
  if (s.empty() || r.ec != std::errc() || r.ptr != e || v < 0)
    line_error(who, source, line,
               std::string(field) + " must be a non-negative integer, got '" + std::string(s) + "'", text);
  return v;
}

inline int parse_label(std::string_view s, const char* who, const std::string& source, int line,
                       std::string_view text, const char* field = "label") {
  const std::int64_t v = parse_count(s, who, source, line, text, field);
  if (v > 1000000000) line_error(who, source, line, std::string(field) + " is out of range: " + std::string(s), text);
  return int(v);
}

}  // namespace detail

// ------------------------------------------------------------------------------------------ mmaction lists

/// Parses a rawframe list from a stream; `source` names it in errors.
inline std::vector<rawframe_entry> parse_rawframe_list(std::istream& in, const std::string& source,
                                                       const list_options& opt = {}) {
  static constexpr const char* who = "data::read_rawframe_list";
  const std::size_t fixed = opt.with_offset ? 3 : 2;
  const char* expected = opt.with_offset ? (opt.multi_label ? "expected 'frame_dir offset total_frames label [label...]'"
                                                            : "expected 'frame_dir offset total_frames label' (4 fields)")
                                         : (opt.multi_label ? "expected 'frame_dir total_frames label [label...]'"
                                                            : "expected 'frame_dir total_frames label' (3 fields)");
  std::vector<rawframe_entry> out;
  detail::for_each_line(in, [&](int number, std::string_view text, const std::vector<std::string_view>& f) {
    const bool count_ok = opt.multi_label ? f.size() >= fixed + 1 : f.size() == fixed + 1;
    if (!count_ok)
      detail::line_error(who, source, number, std::string(expected) + ", found " + std::to_string(f.size()) + " fields",
                         text);
    rawframe_entry e;
    e.frame_dir = std::string(f[0]);
    e.line = number;
    std::size_t i = 1;
    if (opt.with_offset) e.offset = detail::parse_count(f[i++], who, source, number, text, "offset");
    e.total_frames = detail::parse_count(f[i++], who, source, number, text, "total_frames");
    for (; i < f.size(); ++i) e.labels.push_back(detail::parse_label(f[i], who, source, number, text));
    out.push_back(std::move(e));
  });
  return out;
}

/// Reads an mmaction rawframe list (`ucf101_train_split_1_rawframes.txt` and the like).
inline std::vector<rawframe_entry> read_rawframe_list(const std::string& path, const list_options& opt = {}) {
  std::ifstream in = detail::open_text(path, "data::read_rawframe_list");
  return parse_rawframe_list(in, path, opt);
}

/// Parses a video list `path label [label...]` from a stream (`with_offset` is ignored).
inline std::vector<video_entry> parse_video_list(std::istream& in, const std::string& source,
                                                 const list_options& opt = {}) {
  static constexpr const char* who = "data::read_video_list";
  std::vector<video_entry> out;
  detail::for_each_line(in, [&](int number, std::string_view text, const std::vector<std::string_view>& f) {
    const bool count_ok = opt.multi_label ? f.size() >= 2 : f.size() == 2;
    if (!count_ok)
      detail::line_error(who, source, number,
                         std::string(opt.multi_label ? "expected 'path label [label...]'" : "expected 'path label' (2 fields)") +
                             ", found " + std::to_string(f.size()) + " fields",
                         text);
    video_entry e;
    e.path = std::string(f[0]);
    e.line = number;
    for (std::size_t i = 1; i < f.size(); ++i) e.labels.push_back(detail::parse_label(f[i], who, source, number, text));
    out.push_back(std::move(e));
  });
  return out;
}

inline std::vector<video_entry> read_video_list(const std::string& path, const list_options& opt = {}) {
  std::ifstream in = detail::open_text(path, "data::read_video_list");
  return parse_video_list(in, path, opt);
}

/// Formats rawframe entries exactly as mmaction writes them (`dir [offset] total label...\n`).
inline std::string format_rawframe_list(const std::vector<rawframe_entry>& entries, bool with_offset = false) {
  std::ostringstream os;
  for (const rawframe_entry& e : entries) {
    MSCL_CHECK(!e.labels.empty() && e.total_frames >= 0 && e.offset >= 0, value_error,
               "data::format_rawframe_list: entry '" << e.frame_dir << "' needs a label and non-negative counts");
    os << e.frame_dir;
    if (with_offset) os << ' ' << e.offset;
    os << ' ' << e.total_frames;
    for (int l : e.labels) os << ' ' << l;
    os << '\n';
  }
  return os.str();
}

inline std::string format_video_list(const std::vector<video_entry>& entries) {
  std::ostringstream os;
  for (const video_entry& e : entries) {
    MSCL_CHECK(!e.labels.empty(), value_error, "data::format_video_list: entry '" << e.path << "' has no label");
    os << e.path;
    for (int l : e.labels) os << ' ' << l;
    os << '\n';
  }
  return os.str();
}

/// Writes a list file atomically (a reader never sees half a list).
inline void write_text_file(const std::string& path, const std::string& text) {
  io::atomic_file f(path);
  f.write(text);
  f.commit();
}

inline void write_rawframe_list(const std::string& path, const std::vector<rawframe_entry>& entries,
                                bool with_offset = false) {
  write_text_file(path, format_rawframe_list(entries, with_offset));
}

inline void write_video_list(const std::string& path, const std::vector<video_entry>& entries) {
  write_text_file(path, format_video_list(entries));
}

// ------------------------------------------------------------------------------------------ UCF101

/// Parses `classInd.txt` (`1 ApplyEyeMakeup`): ids must be exactly 1..N, each once, in any order.
inline class_index parse_class_index(std::istream& in, const std::string& source) {
  static constexpr const char* who = "data::read_class_index";
  std::vector<std::pair<int, std::string>> rows;
  std::vector<int> lines;
  detail::for_each_line(in, [&](int number, std::string_view text, const std::vector<std::string_view>& f) {
    if (f.size() != 2)
      detail::line_error(who, source, number,
                         "expected '<1-based id> <ClassName>' (2 fields), found " + std::to_string(f.size()) + " fields",
                         text);
    const int id = detail::parse_label(f[0], who, source, number, text, "class id");
    if (id < 1) detail::line_error(who, source, number, "class ids are 1-based, got 0", text);
    rows.emplace_back(id, std::string(f[1]));
    lines.push_back(number);
  });
  MSCL_CHECK(!rows.empty(), io_error, who << ": " << source << " holds no classes");
  class_index ci;
  ci.names.assign(rows.size(), std::string());
  std::vector<int> seen_at(rows.size(), 0);
  for (std::size_t r = 0; r < rows.size(); ++r) {
    const int id = rows[r].first;
    MSCL_CHECK(std::size_t(id) <= rows.size(), io_error,
               who << ": " << source << ":" << lines[r] << ": class id " << id << " is out of range 1.." << rows.size()
                   << " (ids must be 1..N for N classes)");
    MSCL_CHECK(seen_at[std::size_t(id - 1)] == 0, io_error,
               who << ": " << source << ":" << lines[r] << ": class id " << id << " repeats line "
                   << seen_at[std::size_t(id - 1)]);
    seen_at[std::size_t(id - 1)] = lines[r];
    ci.names[std::size_t(id - 1)] = rows[r].second;
  }
  return ci;
}

inline class_index read_class_index(const std::string& path) {
  std::ifstream in = detail::open_text(path, "data::read_class_index");
  return parse_class_index(in, path);
}

/// Writes a UCF-style classInd.txt (`1 brush_hair`, one class a line, `\n` endings), as mmaction
/// generates for HMDB51.
inline void write_class_index(const std::string& path, const class_index& ci) {
  std::ostringstream os;
  for (std::size_t i = 0; i < ci.names.size(); ++i) os << (i + 1) << ' ' << ci.names[i] << '\n';
  write_text_file(path, os.str());
}

namespace detail {

/// Class of a UCF101 path: the directory part when there is one, else the `v_<Class>_g..` prefix
/// of the file name. Returns -1 when neither names a class.
inline int ucf101_class_of(std::string_view path, const class_index& ci) {
  const std::size_t slash = path.find_last_of('/');
  if (slash != std::string_view::npos) {
    std::string_view dir = path.substr(0, slash);
    const std::size_t s2 = dir.find_last_of('/');
    if (s2 != std::string_view::npos) dir = dir.substr(s2 + 1);
    const int c = ci.find(dir);
    if (c >= 0) return c;
  }
  std::string_view file = slash == std::string_view::npos ? path : path.substr(slash + 1);
  if (file.size() > 2 && file.substr(0, 2) == "v_") {
    file.remove_prefix(2);
    const std::size_t g = file.rfind("_g");
    if (g != std::string_view::npos) return ci.find(file.substr(0, g));
  }
  return -1;
}

}  // namespace detail

/// Parses `trainlist0k.txt`: `Class/v_Class_gXX_cYY.avi <1-based id>` → 0-based label. The id must
/// be within classInd's 1..N, and agree with the class directory when that names a class.
inline std::vector<video_entry> parse_ucf101_trainlist(std::istream& in, const std::string& source,
                                                       const class_index& ci) {
  static constexpr const char* who = "data::read_ucf101_trainlist";
  std::vector<video_entry> out;
  detail::for_each_line(in, [&](int number, std::string_view text, const std::vector<std::string_view>& f) {
    if (f.size() != 2)
      detail::line_error(who, source, number,
                         "expected '<Class>/<video>.avi <1-based class id>' (2 fields), found " + std::to_string(f.size()) +
                             " fields",
                         text);
    const int id = detail::parse_label(f[1], who, source, number, text, "class id");
    if (id < 1 || id > ci.size())
      detail::line_error(who, source, number,
                         "class id " + std::to_string(id) + " is out of range 1.." + std::to_string(ci.size()) +
                             " of classInd.txt",
                         text);
    const int from_path = detail::ucf101_class_of(f[0], ci);
    if (from_path >= 0 && from_path != id - 1)
      detail::line_error(who, source, number,
                         "class id " + std::to_string(id) + " (" + ci.names[std::size_t(id - 1)] +
                             ") disagrees with the path's class " + ci.names[std::size_t(from_path)],
                         text);
    out.push_back(video_entry{std::string(f[0]), {id - 1}, number});
  });
  return out;
}

inline std::vector<video_entry> read_ucf101_trainlist(const std::string& path, const class_index& ci) {
  std::ifstream in = detail::open_text(path, "data::read_ucf101_trainlist");
  return parse_ucf101_trainlist(in, path, ci);
}

/// Parses `testlist0k.txt`: path only; the label comes from the class directory (or the file's
/// `v_<Class>_` prefix), matched case-insensitively against classInd. A second field, if present,
/// must be a 1-based id that agrees.
inline std::vector<video_entry> parse_ucf101_testlist(std::istream& in, const std::string& source,
                                                      const class_index& ci) {
  static constexpr const char* who = "data::read_ucf101_testlist";
  std::vector<video_entry> out;
  detail::for_each_line(in, [&](int number, std::string_view text, const std::vector<std::string_view>& f) {
    if (f.size() > 2)
      detail::line_error(who, source, number,
                         "expected '<Class>/<video>.avi' (1 field), found " + std::to_string(f.size()) + " fields", text);
    const int c = detail::ucf101_class_of(f[0], ci);
    if (c < 0)
      detail::line_error(who, source, number, "the path names no class of classInd.txt (directory or v_<Class>_ prefix)",
                         text);
    if (f.size() == 2) {
      const int id = detail::parse_label(f[1], who, source, number, text, "class id");
      if (id != c + 1)
        detail::line_error(who, source, number,
                           "class id " + std::to_string(id) + " disagrees with the path's class " +
                               ci.names[std::size_t(c)] + " (id " + std::to_string(c + 1) + ")",
                           text);
    }
    out.push_back(video_entry{std::string(f[0]), {c}, number});
  });
  return out;
}

inline std::vector<video_entry> read_ucf101_testlist(const std::string& path, const class_index& ci) {
  std::ifstream in = detail::open_text(path, "data::read_ucf101_testlist");
  return parse_ucf101_testlist(in, path, ci);
}

/// Reads split k (1..3) from an `ucfTrainTestlist/` directory: classInd.txt, trainlist0k.txt, testlist0k.txt.
inline dataset_split read_ucf101_split(const std::string& dir, int k) {
  MSCL_CHECK(k >= 1 && k <= 3, value_error, "data::read_ucf101_split: split must be 1, 2 or 3, got " << k);
  dataset_split s;
  const std::filesystem::path d(dir);
  s.classes = read_class_index((d / "classInd.txt").string());
  s.train = read_ucf101_trainlist((d / ("trainlist0" + std::to_string(k) + ".txt")).string(), s.classes);
  s.test = read_ucf101_testlist((d / ("testlist0" + std::to_string(k) + ".txt")).string(), s.classes);
  return s;
}

// ------------------------------------------------------------------------------------------ HMDB51

/// Parses one `<class>_test_split<k>.txt`: `<clip>.avi <flag>`, flag 1 train / 2 test / 0 unused.
/// Appends `<class>/<clip>.avi` with `label` to `split.train` / `split.test`.
inline void parse_hmdb51_split_file(std::istream& in, const std::string& source, const std::string& class_name,
                                    int label, dataset_split& split) {
  static constexpr const char* who = "data::read_hmdb51_split";
  detail::for_each_line(in, [&](int number, std::string_view text, const std::vector<std::string_view>& f) {
    if (f.size() != 2)
      detail::line_error(who, source, number,
                         "expected '<clip>.avi <flag 0|1|2>' (2 fields), found " + std::to_string(f.size()) + " fields",
                         text);
    const int flag = detail::parse_label(f[1], who, source, number, text, "flag");
    if (flag > 2) detail::line_error(who, source, number, "flag must be 0 (unused), 1 (train) or 2 (test)", text);
    video_entry e{class_name + "/" + std::string(f[0]), {label}, number};
    if (flag == 1) split.train.push_back(std::move(e));
    else if (flag == 2) split.test.push_back(std::move(e));
    else ++split.unused;
  });
}

/// Reads split k (1..3) from `testTrainMulti_7030_splits/`: every `<class>_test_split<k>.txt`;
/// classes are the sorted class names (label 0 = brush_hair), like mmaction's generated classInd.
inline dataset_split read_hmdb51_split(const std::string& dir, int k) {
  MSCL_CHECK(k >= 1 && k <= 3, value_error, "data::read_hmdb51_split: split must be 1, 2 or 3, got " << k);
  namespace fs = std::filesystem;
  std::error_code ec;
  MSCL_CHECK(fs::is_directory(dir, ec), io_error, "data::read_hmdb51_split: '" << dir << "' is not a directory");
  const std::string suffix = "_test_split" + std::to_string(k) + ".txt";
  std::vector<std::string> names;
  for (const fs::directory_entry& de : fs::directory_iterator(dir)) {
    const std::string f = de.path().filename().string();
    if (f.size() > suffix.size() && f.compare(f.size() - suffix.size(), suffix.size(), suffix) == 0)
      names.push_back(f.substr(0, f.size() - suffix.size()));
  }
  MSCL_CHECK(!names.empty(), io_error,
             "data::read_hmdb51_split: no '*" << suffix << "' files in '" << dir << "'");
  std::sort(names.begin(), names.end());
  dataset_split s;
  s.classes.names = names;
  for (std::size_t c = 0; c < names.size(); ++c) {
    const std::string path = (fs::path(dir) / (names[c] + suffix)).string();
    std::ifstream in = detail::open_text(path, "data::read_hmdb51_split");
    parse_hmdb51_split_file(in, path, names[c], int(c), s);
  }
  return s;
}

// ------------------------------------------------------------------------------------------ split lists

/// Frame count for a frame directory (relative to the rawframes root); return a negative number
/// for "not extracted" to leave the video out (mmaction's build_file_list does the same).
using frame_count_fn = std::function<std::int64_t(const std::string& frame_dir)>;

/// `path` without its extension (`Class/v.avi` → `Class/v`), the rawframes directory of a video.
inline std::string strip_extension(const std::string& path) {
  const std::size_t dot = path.find_last_of('.');
  const std::size_t slash = path.find_last_of('/');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) return path;
  return path.substr(0, dot);
}

/// Video entries → rawframe entries with counts from `count`; videos whose count is negative are
/// skipped and, when `skipped` is given, their paths collected.
inline std::vector<rawframe_entry> to_rawframe_entries(const std::vector<video_entry>& videos, const frame_count_fn& count,
                                                       std::vector<std::string>* skipped = nullptr) {
  MSCL_CHECK(static_cast<bool>(count), value_error, "data::to_rawframe_entries: a frame-count callback is required");
  std::vector<rawframe_entry> out;
  out.reserve(videos.size());
  for (const video_entry& v : videos) {
    rawframe_entry e;
    e.frame_dir = strip_extension(v.path);
    e.total_frames = count(e.frame_dir);
    if (e.total_frames < 0) {
      if (skipped) skipped->push_back(v.path);
      continue;
    }
    e.labels = v.labels;
    e.line = v.line;
    out.push_back(std::move(e));
  }
  return out;
}

/// Which mmaction list format to write.
enum class list_format { rawframes, videos };

/// What write_split_lists produced.
struct split_lists_written {
  std::string train_path, val_path;
  std::size_t train = 0, val = 0;
  std::vector<std::string> skipped;  ///< videos left out (rawframes: count callback said missing)
};

/// Writes `<dataset>_train_split_<k>_<format>.txt` and `<dataset>_val_split_<k>_<format>.txt` in
/// `out_dir`, in mmaction's formats: videos `Class/v.avi label`, rawframes `Class/v N label` (N from
/// `count`, which is required for rawframes; pass an RGB or a flow counter as the list needs).
inline split_lists_written write_split_lists(const dataset_split& split, const std::string& dataset, int k,
                                             const std::string& out_dir, list_format format,
                                             const frame_count_fn& count = {}) {
  namespace fs = std::filesystem;
  const std::string fmt = format == list_format::rawframes ? "rawframes" : "videos";
  split_lists_written w;
  w.train_path = (fs::path(out_dir) / (dataset + "_train_split_" + std::to_string(k) + "_" + fmt + ".txt")).string();
  w.val_path = (fs::path(out_dir) / (dataset + "_val_split_" + std::to_string(k) + "_" + fmt + ".txt")).string();
  if (format == list_format::videos) {
    write_video_list(w.train_path, split.train);
    write_video_list(w.val_path, split.test);
    w.train = split.train.size();
    w.val = split.test.size();
  } else {
    MSCL_CHECK(static_cast<bool>(count), value_error,
               "data::write_split_lists: rawframes lists need a frame-count callback (e.g. data::rawframes_counter)");
    const std::vector<rawframe_entry> tr = to_rawframe_entries(split.train, count, &w.skipped);
    const std::vector<rawframe_entry> te = to_rawframe_entries(split.test, count, &w.skipped);
    write_rawframe_list(w.train_path, tr);
    write_rawframe_list(w.val_path, te);
    w.train = tr.size();
    w.val = te.size();
  }
  return w;
}

// ------------------------------------------------------------------------------------------ SSv2

/// "Holding [something] next to [something]" → "Holding something next to something".
inline std::string strip_template_brackets(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s)
    if (c != '[' && c != ']') out.push_back(c);
  return out;
}

/// Something-Something v2 classes: template text (no brackets) → label.
struct ssv2_labels {
  class_index classes;                ///< names[label] = template text
  std::map<std::string, int> by_template;
  int find(const std::string& templ) const {
    const auto it = by_template.find(templ);
    return it == by_template.end() ? -1 : it->second;
  }
};

namespace detail {

inline nlohmann::json read_json_file(const std::string& path, const char* who) {
  std::ifstream in = open_text(path, who);
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    std::ostringstream os;
    os << who << ": '" << path << "' is not valid JSON: " << e.what();
    throw io_error(os.str());
  }
}

}  // namespace detail

/// Parses `something-something-v2-labels.json` ({"template": "index", ...}; the index may be a
/// string, as in the official file, or a number). Indices must be exactly 0..N-1.
inline ssv2_labels parse_ssv2_labels(const nlohmann::json& j, const std::string& source) {
  static constexpr const char* who = "data::read_ssv2_labels";
  MSCL_CHECK(j.is_object() && !j.empty(), io_error, who << ": " << source << ": expected a non-empty JSON object "
                                                           "{\"template\": \"index\", ...}, got " << j.type_name());
  ssv2_labels out;
  std::vector<std::pair<int, std::string>> rows;
  for (auto it = j.begin(); it != j.end(); ++it) {
    long long idx = -1;
    if (it.value().is_string()) {
      const std::string& s = it.value().get_ref<const std::string&>();
      const auto r = std::from_chars(s.data(), s.data() + s.size(), idx);
      MSCL_CHECK(!s.empty() && r.ec == std::errc() && r.ptr == s.data() + s.size(), io_error,
                 who << ": " << source << ": index of '" << it.key() << "' is not an integer: '" << s << "'");
    } else {
      MSCL_CHECK(it.value().is_number_integer(), io_error,
                 who << ": " << source << ": index of '" << it.key() << "' must be a string or integer, got "
                     << it.value().dump());
      idx = it.value().get<long long>();
    }
    MSCL_CHECK(idx >= 0 && idx < (long long)j.size(), io_error,
               who << ": " << source << ": index " << idx << " of '" << it.key() << "' is out of range 0.." << j.size() - 1);
    rows.emplace_back(int(idx), strip_template_brackets(it.key()));
  }
  out.classes.names.assign(rows.size(), std::string());
  std::vector<bool> seen(rows.size(), false);
  for (const auto& [idx, name] : rows) {
    MSCL_CHECK(!seen[std::size_t(idx)], io_error, who << ": " << source << ": index " << idx << " is used twice");
    seen[std::size_t(idx)] = true;
    out.classes.names[std::size_t(idx)] = name;
    out.by_template[name] = idx;
  }
  return out;
}

inline ssv2_labels read_ssv2_labels(const std::string& path) {
  return parse_ssv2_labels(detail::read_json_file(path, "data::read_ssv2_labels"), path);
}

/// Parses a train/validation array (`labels` given) or the test array (`labels` null: ids only,
/// label -1). Each item needs a string "id"; with labels, a "template" whose bracket-free text is a
/// class. Errors name the file, the item's position and its id.
inline std::vector<ssv2_entry> parse_ssv2_annotations(const nlohmann::json& j, const std::string& source,
                                                      const ssv2_labels* labels) {
  static constexpr const char* who = "data::read_ssv2_annotations";
  MSCL_CHECK(j.is_array(), io_error, who << ": " << source << ": expected a JSON array of items, got " << j.type_name());
  std::vector<ssv2_entry> out;
  out.reserve(j.size());
  for (std::size_t i = 0; i < j.size(); ++i) {
    const nlohmann::json& item = j[i];
    MSCL_CHECK(item.is_object() && item.contains("id"), io_error,
               who << ": " << source << ": item " << i << " is not an object with an \"id\": " << item.dump().substr(0, 200));
    ssv2_entry e;
    const nlohmann::json& id = item["id"];
    MSCL_CHECK(id.is_string() || id.is_number_unsigned(), io_error,
               who << ": " << source << ": item " << i << ": \"id\" must be a string, got " << id.dump());
    e.id = id.is_string() ? id.get<std::string>() : std::to_string(id.get<unsigned long long>());
    if (labels) {
      MSCL_CHECK(item.contains("template") && item["template"].is_string(), io_error,
                 who << ": " << source << ": item " << i << " (id " << e.id << ") has no string \"template\"");
      e.template_text = strip_template_brackets(item["template"].get<std::string>());
      e.label = labels->find(e.template_text);
      MSCL_CHECK(e.label >= 0, io_error,
                 who << ": " << source << ": item " << i << " (id " << e.id << "): template '" << e.template_text
                     << "' is not in the labels file");
      if (item.contains("label") && item["label"].is_string()) e.label_text = item["label"].get<std::string>();
      if (item.contains("placeholders") && item["placeholders"].is_array())
        for (const nlohmann::json& p : item["placeholders"])
          if (p.is_string()) e.placeholders.push_back(p.get<std::string>());
    }
    out.push_back(std::move(e));
  }
  return out;
}

/// Reads `...-train.json` / `...-validation.json` against the labels.
inline std::vector<ssv2_entry> read_ssv2_annotations(const std::string& path, const ssv2_labels& labels) {
  return parse_ssv2_annotations(detail::read_json_file(path, "data::read_ssv2_annotations"), path, &labels);
}

/// Reads `...-test.json` (ids only; labels are -1).
inline std::vector<ssv2_entry> read_ssv2_test(const std::string& path) {
  return parse_ssv2_annotations(detail::read_json_file(path, "data::read_ssv2_test"), path, nullptr);
}

/// SSv2 items as a video list (`<id><extension>`, e.g. `78687.webm`; pass "" for rawframes dirs).
/// Test items (label -1) are rejected: a list needs labels.
inline std::vector<video_entry> ssv2_to_video_list(const std::vector<ssv2_entry>& items,
                                                   const std::string& extension = ".webm") {
  std::vector<video_entry> out;
  out.reserve(items.size());
  for (const ssv2_entry& e : items) {
    MSCL_CHECK(e.label >= 0, value_error, "data::ssv2_to_video_list: item " << e.id << " has no label (a test item?)");
    out.push_back(video_entry{e.id + extension, {e.label}, 0});
  }
  return out;
}

}  // namespace mscl::data
