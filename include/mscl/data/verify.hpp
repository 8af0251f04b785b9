/// \file verify.hpp
/// \brief Checks a rawframes tree against its annotation list before training starts: missing
///        directories, frame counts that disagree with the list, holes in the numbering, flow x/y
///        counts that do not pair up with the RGB frames, unreadable or truncated files, labels out
///        of range (ECOSYSTEM.md §3: users lose runs to exactly these, mmaction2 #79, #1812, #2207).
///
/// The result is a report (counts per problem kind plus the first examples with file names), not
/// an exception, so one pass finds every problem. Every file is checked cheaply (it opens, starts
/// with the JPEG SOI marker FF D8 and has the EOI marker FF D9 within its last 32 bytes, which
/// catches truncation); with `decode_every = N` frames 0, N, 2N, ... of each video are fully decoded
/// too. Entries are checked in parallel with OpenMP when available; the report is the same for any
/// thread count.
#pragma once
#include <array>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <ostream>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "annotations.hpp"
#include "rawframes.hpp"

namespace mscl::data {

/// Kinds of problem verify reports.
enum class problem_kind : int {
  missing_dir = 0,   ///< the frame directory does not exist
  count_mismatch,    ///< the list's total_frames (and offset) disagree with the frames on disk
  missing_frame,     ///< a hole in the numbering (or no file at the start index)
  flow_mismatch,     ///< flow x/y counts differ, or flow is neither N nor N-1 for N RGB frames
  unreadable,        ///< a file cannot be opened, is not a JPEG, is truncated or fails to decode
  bad_label,         ///< a label outside [0, num_classes)
};
inline constexpr int problem_kind_count = 6;

inline const char* problem_kind_name(problem_kind k) {
  switch (k) {
    case problem_kind::missing_dir: return "missing_dir";
    case problem_kind::count_mismatch: return "count_mismatch";
    case problem_kind::missing_frame: return "missing_frame";
    case problem_kind::flow_mismatch: return "flow_mismatch";
    case problem_kind::unreadable: return "unreadable";
    case problem_kind::bad_label: return "bad_label";
  }
  return "?";
}

struct verify_options {
  int num_classes = 0;             ///< > 0: labels must lie in [0, num_classes)
  std::int64_t decode_every = 0;   ///< > 0: fully decode frames 0, N, 2N, ... (needs MSCL_WITH_JPEG)
  bool check_files = true;         ///< open every file and check its JPEG markers
  bool check_flow = true;          ///< check flow counts when flow files exist
  bool require_flow = false;       ///< a directory without flow is a flow_mismatch
  bool counts_are_flow = false;    ///< the list's total_frames count flow steps (flow lists, mmaction2 #1812)
  bool with_offset = false;        ///< entries are segments: offset + total_frames must fit (else: equal counts)
  std::size_t max_examples = 5;    ///< examples kept per kind
  rawframes_options frames;        ///< template/start overrides passed to rawframes_dir::probe
};

struct verify_problem {
  problem_kind kind = problem_kind::missing_dir;
  std::string frame_dir;
  int line = 0;        ///< line in the list (0 when unknown)
  std::string detail;  ///< names the file(s) involved
};

struct verify_report {
  std::string root;
  std::size_t entries = 0;          ///< list entries checked
  std::size_t bad_entries = 0;      ///< entries with at least one problem
  std::size_t files_checked = 0;    ///< files opened for the marker check
  std::size_t files_decoded = 0;    ///< files fully decoded
  std::size_t with_flow = 0;        ///< entries whose directory holds flow
  std::array<std::size_t, problem_kind_count> counts{};  ///< problems per kind
  std::vector<verify_problem> examples;                    ///< first max_examples per kind, list order

  std::size_t count(problem_kind k) const { return counts[std::size_t(k)]; }
  std::size_t problems() const {
    std::size_t n = 0;
    for (std::size_t c : counts) n += c;
    return n;
  }
  bool ok() const { return problems() == 0; }

  /// Human-readable summary: totals, one line per non-zero kind, then the examples.
  void print(std::ostream& os) const {
    os << "verified " << entries << " entries under '" << root << "': " << (entries - bad_entries) << " ok, "
       << bad_entries << " with problems; " << files_checked << " files checked, " << files_decoded << " decoded, "
       << with_flow << " directories with flow\n";
    for (int k = 0; k < problem_kind_count; ++k)
      if (counts[std::size_t(k)] > 0)
        os << "  " << problem_kind_name(problem_kind(k)) << ": " << counts[std::size_t(k)] << "\n";
    if (!examples.empty()) {
      os << "examples:\n";
      for (const verify_problem& p : examples)
        os << "  [" << problem_kind_name(p.kind) << "] " << (p.line > 0 ? "line " + std::to_string(p.line) + " " : std::string())
           << p.frame_dir << ": " << p.detail << "\n";
    }
    os << (ok() ? "OK\n" : "FAILED\n");
  }
};

namespace detail {

/// Cheap readability check: opens, SOI at the start, EOI near the end. Returns "" or a reason.
inline std::string jpeg_markers_problem(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return "cannot open";
  unsigned char head[2] = {0, 0}, tail[32];
  std::string why;
  if (std::fread(head, 1, 2, f) != 2 || head[0] != 0xFF || head[1] != 0xD8) {
    why = "not a JPEG (no FF D8 at the start)";
  } else if (std::fseek(f, 0, SEEK_END) != 0) {
    why = "cannot seek";
  } else {
    const long size = std::ftell(f);
    const long k = size < 32 ? size : 32;
    bool eoi = false;
    if (k >= 2 && std::fseek(f, size - k, SEEK_SET) == 0 && std::fread(tail, 1, std::size_t(k), f) == std::size_t(k))
      for (long i = 0; i + 1 < k; ++i)
        if (tail[i] == 0xFF && tail[i + 1] == 0xD9) eoi = true;
    if (!eoi) why = "truncated (no FF D9 end marker), " + std::to_string(size) + " bytes";
  }
  std::fclose(f);
  return why;
}

struct entry_result {
  std::vector<verify_problem> problems;
  std::size_t files_checked = 0, files_decoded = 0;
  bool has_flow = false;
};

inline std::string count_text(const frame_template& t, const frame_scan& s) {
  if (s.files == 0) return "no " + t.prefix + "* files";
  return std::to_string(s.files) + " files " + t.name(s.first) + ".." + t.name(s.last);
}

inline entry_result verify_entry(const std::string& root, const rawframe_entry& e, const verify_options& opt) {
  entry_result r;
  auto add = [&](problem_kind k, std::string detail) {
    r.problems.push_back(verify_problem{k, e.frame_dir, e.line, std::move(detail)});
  };
  if (opt.num_classes > 0)
    for (int l : e.labels)
      if (l < 0 || l >= opt.num_classes)
        add(problem_kind::bad_label, "label " + std::to_string(l) + " is outside [0, " + std::to_string(opt.num_classes) + ")");
  const std::string dir = (std::filesystem::path(root) / e.frame_dir).string();
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    add(problem_kind::missing_dir, "directory '" + dir + "' does not exist");
    return r;
  }
  rawframes_dir d;
  try {
    d = rawframes_dir::probe(dir, opt.frames);
  } catch (const std::exception& ex) {
    add(problem_kind::missing_dir, ex.what());
    return r;
  }
  r.has_flow = d.flow != flow_layout::none;
  // Holes: frames beyond the contiguous run exist, so the run stopped at a missing file.
  const frame_scan& rs = d.rgb_scan;
  if (rs.files > 0 && rs.contiguous < rs.last - rs.start + 1)
    add(problem_kind::missing_frame, "'" + d.rgb_template.name(rs.start + rs.contiguous) + "' is missing (" +
                                         count_text(d.rgb_template, rs) + ", start index " + std::to_string(rs.start) + ")");
  // The count the list's total_frames is compared against: the apparent span, so a hole is
  // reported once (as missing_frame) and a short directory as count_mismatch.
  const std::int64_t rgb_span = rs.files > 0 ? std::max<std::int64_t>(rs.last - rs.start + 1, 0) : 0;
  std::int64_t flow_span = 0;
  if (r.has_flow) {
    const frame_scan& xs = d.flow_x_scan;
    const frame_scan& ys = d.flow_y_scan;
    flow_span = std::max<std::int64_t>(xs.files > 0 ? xs.last - xs.start + 1 : 0, ys.files > 0 ? ys.last - ys.start + 1 : 0);
    for (const auto* p : {&xs, &ys}) {
      const frame_template& t = p == &xs ? d.flow_x_template : d.flow_y_template;
      if (d.flow == flow_layout::packed_rgb && p == &ys) break;
      if (p->files > 0 && p->contiguous < p->last - p->start + 1)  // a hole; a short tail is a flow_mismatch
        add(problem_kind::missing_frame, "'" + t.name(p->start + p->contiguous) + "' is missing (" + count_text(t, *p) + ")");
    }
  }
  const std::int64_t listed = opt.counts_are_flow ? flow_span : rgb_span;
  const char* what = opt.counts_are_flow ? "flow steps" : "RGB frames";
  if (opt.with_offset || e.offset > 0) {
    if (e.offset + e.total_frames > listed)
      add(problem_kind::count_mismatch, "offset " + std::to_string(e.offset) + " + total_frames " +
                                            std::to_string(e.total_frames) + " exceeds the " + std::to_string(listed) +
                                            " " + what + " on disk (" + count_text(d.rgb_template, rs) + ")");
  } else if (e.total_frames != listed) {
    add(problem_kind::count_mismatch,
        "list says " + std::to_string(e.total_frames) + " " + what + ", directory has " + std::to_string(listed) + " (" +
            (opt.counts_are_flow ? count_text(d.flow_x_template, d.flow_x_scan) : count_text(d.rgb_template, rs)) + ")");
  }
  if (opt.check_flow) {
    if (!r.has_flow) {
      if (opt.require_flow || opt.counts_are_flow)
        add(problem_kind::flow_mismatch, "no flow files (looked for flow_x_/flow_y_, x_/y_, flow_ templates)");
    } else {
      if (d.flow == flow_layout::two_grey && d.flow_x_scan.files != d.flow_y_scan.files)
        add(problem_kind::flow_mismatch, count_text(d.flow_x_template, d.flow_x_scan) + " but " +
                                             count_text(d.flow_y_template, d.flow_y_scan));
      if (!(flow_span == rgb_span || flow_span + 1 == rgb_span))
        add(problem_kind::flow_mismatch, std::to_string(flow_span) + " flow steps for " + std::to_string(rgb_span) +
                                             " RGB frames (expected N or N-1)");
    }
  }
  if (opt.check_files || opt.decode_every > 0) {
    auto check = [&](const frame_template& t, const frame_scan& s, int channels) {
      if (s.files == 0) return;
      for (std::int64_t n = s.start; n <= s.last; ++n) {
        const std::string file = t.name(n);
        const std::string path = (std::filesystem::path(dir) / file).string();
        if (n - s.start >= s.contiguous && !std::filesystem::exists(path, ec)) continue;  // reported as a hole
        if (opt.check_files) {
          ++r.files_checked;
          const std::string why = jpeg_markers_problem(path);
          if (!why.empty()) {
            add(problem_kind::unreadable, "'" + path + "': " + why);
            continue;
          }
        }
        if (opt.decode_every > 0 && (n - s.start) % opt.decode_every == 0) {
#if defined(MSCL_WITH_JPEG) && MSCL_WITH_JPEG
          ++r.files_decoded;
          try {
            (void)io::read_jpeg(path, channels);
          } catch (const std::exception& ex) {
            add(problem_kind::unreadable, ex.what());
          }
#else
          (void)channels;
#endif
        }
      }
    };
    check(d.rgb_template, rs, 3);
    if (r.has_flow) {
      check(d.flow_x_template, d.flow_x_scan, d.flow == flow_layout::packed_rgb ? 3 : 1);
      if (d.flow == flow_layout::two_grey) check(d.flow_y_template, d.flow_y_scan, 1);
    }
  }
  return r;
}

}  // namespace detail

/// Verifies every entry of `list` against the rawframes tree under `root` (see the file comment).
/// Throws config_error for decode_every > 0 without JPEG support; everything else goes in the report.
inline verify_report verify_rawframes(const std::string& root, const std::vector<rawframe_entry>& list,
                                      const verify_options& opt = {}) {
#if !(defined(MSCL_WITH_JPEG) && MSCL_WITH_JPEG)
  MSCL_CHECK(opt.decode_every <= 0, config_error,
             "data::verify_rawframes: decode_every needs JPEG support (build with mscl::jpeg / MSCL_WITH_JPEG)");
#endif
  verify_report rep;
  rep.root = root;
  rep.entries = list.size();
  std::vector<detail::entry_result> results(list.size());
  const long n = long(list.size());
#if defined(_OPENMP)
#pragma omp parallel for schedule(dynamic, 4)
#endif
  for (long i = 0; i < n; ++i) {
    try {
      results[std::size_t(i)] = detail::verify_entry(root, list[std::size_t(i)], opt);
    } catch (const std::exception& ex) {  // never let an exception escape an OpenMP region
      results[std::size_t(i)].problems.push_back(
          verify_problem{problem_kind::unreadable, list[std::size_t(i)].frame_dir, list[std::size_t(i)].line, ex.what()});
    }
  }
  std::array<std::size_t, problem_kind_count> shown{};
  for (const detail::entry_result& r : results) {
    rep.files_checked += r.files_checked;
    rep.files_decoded += r.files_decoded;
    rep.with_flow += r.has_flow ? 1 : 0;
    if (!r.problems.empty()) ++rep.bad_entries;
    for (const verify_problem& p : r.problems) {
      const std::size_t k = std::size_t(p.kind);
      ++rep.counts[k];
      if (shown[k] < opt.max_examples) {
        ++shown[k];
        rep.examples.push_back(p);
      }
    }
  }
  return rep;
}

}  // namespace mscl::data
