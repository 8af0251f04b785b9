// Annotation parsers: mmaction rawframe/video lists, UCF101 / HMDB51 split files, SSv2 JSON,
// the split-list writer. Inputs are written inline (expected results are spelled out by hand);
// errors must name FILE:LINE and the offending text.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <unistd.h>

#include <mscl/data/annotations.hpp>

namespace fs = std::filesystem;
using namespace mscl::data;

namespace {

struct temp_dir {
  fs::path path;
  temp_dir() {
    path = fs::temp_directory_path() / ("mscl_ann_" + std::to_string(::getpid()) + "_" + std::to_string(counter()++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  static int& counter() {
    static int c = 0;
    return c;
  }
  std::string write(const std::string& name, const std::string& text) const {
    const fs::path p = path / name;
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << text;
    return p.string();
  }
};

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs f, expects io_error whose message contains every needle.
template <class F>
void require_io_error(F&& f, std::initializer_list<std::string> needles) {
  try {
    f();
    FAIL("expected mscl::io_error");
  } catch (const mscl::io_error& e) {
    const std::string msg = e.what();
    INFO(msg);
    for (const std::string& n : needles) CHECK(msg.find(n) != std::string::npos);
  }
}

}  // namespace

TEST_CASE("rawframe list: plain, CRLF, tabs, trailing blanks, blank lines, no final newline", "[data][annotations]") {
  temp_dir t;
  const std::string p = t.write("list.txt",
                                "\xEF\xBB\xBF"
                                "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01 121 0\r\n"
                                "\r\n"
                                "Archery/v_Archery_g01_c01\t140\t2   \r\n"
                                "   \n"
                                "YoYo/v_YoYo_g25_c05 88 100");
  const auto v = read_rawframe_list(p);
  REQUIRE(v.size() == 3);
  CHECK(v[0].frame_dir == "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01");
  CHECK(v[0].total_frames == 121);
  CHECK(v[0].offset == 0);
  CHECK(v[0].labels == std::vector<int>{0});
  CHECK(v[0].line == 1);
  CHECK(v[1].frame_dir == "Archery/v_Archery_g01_c01");
  CHECK(v[1].total_frames == 140);
  CHECK(v[1].label() == 2);
  CHECK(v[1].line == 3);
  CHECK(v[2].frame_dir == "YoYo/v_YoYo_g25_c05");
  CHECK(v[2].total_frames == 88);
  CHECK(v[2].label() == 100);
  CHECK(v[2].line == 5);
}

TEST_CASE("rawframe list: multi-label and with_offset", "[data][annotations]") {
  std::istringstream ml("some/dir 163 1 3 5\nother 10 7\n");
  list_options o;
  o.multi_label = true;
  const auto a = parse_rawframe_list(ml, "ml.txt", o);
  REQUIRE(a.size() == 2);
  CHECK(a[0].labels == std::vector<int>{1, 3, 5});
  CHECK(a[1].labels == std::vector<int>{7});

  std::istringstream off("some/dir 12 163 3\n");
  list_options wo;
  wo.with_offset = true;
  const auto b = parse_rawframe_list(off, "off.txt", wo);
  REQUIRE(b.size() == 1);
  CHECK(b[0].offset == 12);
  CHECK(b[0].total_frames == 163);
  CHECK(b[0].label() == 3);

  // Round trip through the formatter.
  CHECK(format_rawframe_list(b, true) == "some/dir 12 163 3\n");
  CHECK(format_rawframe_list(a) == "some/dir 163 1 3 5\nother 10 7\n");
}

TEST_CASE("rawframe list: malformed lines name file, line and text", "[data][annotations]") {
  temp_dir t;
  const std::string p1 = t.write("a.txt", "ok/dir 10 1\r\nbad/dir 10\r\n");
  require_io_error([&] { read_rawframe_list(p1); }, {p1 + ":2", "bad/dir 10'", "3 fields", "found 2"});
  const std::string p2 = t.write("b.txt", "x 10 1\n\ny 12x 1\n");
  require_io_error([&] { read_rawframe_list(p2); }, {p2 + ":3", "total_frames", "'12x'", "y 12x 1"});
  const std::string p3 = t.write("c.txt", "x -4 1\n");
  require_io_error([&] { read_rawframe_list(p3); }, {p3 + ":1", "total_frames must be >= 0", "-4"});
  const std::string p4 = t.write("d.txt", "x 4 -1\n");
  require_io_error([&] { read_rawframe_list(p4); }, {p4 + ":1", "label must be >= 0"});
  const std::string p5 = t.write("e.txt", "x 4 one\n");
  require_io_error([&] { read_rawframe_list(p5); }, {p5 + ":1", "label", "'one'"});
  // Four fields without multi_label: probably a with_offset list read as plain.
  const std::string p6 = t.write("f.txt", "x 1 4 2\n");
  require_io_error([&] { read_rawframe_list(p6); }, {p6 + ":1", "found 4 fields"});
  list_options wo;
  wo.with_offset = true;
  require_io_error([&] { read_rawframe_list(p1, wo); }, {p1 + ":1", "4 fields"});
  require_io_error([&] { read_rawframe_list((t.path / "missing.txt").string()); }, {"missing.txt", "cannot open"});
  // Integer overflow is an error, not a wrap-around.
  std::istringstream big("x 99999999999999999999 1\n");
  require_io_error([&] { parse_rawframe_list(big, "big.txt"); }, {"big.txt:1", "total_frames"});
}

TEST_CASE("video list: good, malformed, write/read round trip", "[data][annotations]") {
  temp_dir t;
  const std::string p = t.write("v.txt", "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 0 \r\n.../74225.mp4\t140");
  const auto v = read_video_list(p);
  REQUIRE(v.size() == 2);
  CHECK(v[0].path == "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi");
  CHECK(v[0].label() == 0);
  CHECK(v[1].path == ".../74225.mp4");
  CHECK(v[1].label() == 140);
  const std::string q = (t.path / "w.txt").string();
  write_video_list(q, v);
  CHECK(read_all(q) == "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 0\n.../74225.mp4 140\n");
  const std::string bad = t.write("bad.txt", "a.avi 1\nb.avi\n");
  require_io_error([&] { read_video_list(bad); }, {bad + ":2", "'b.avi'", "2 fields"});
  const std::string neg = t.write("neg.txt", "a.avi -3\n");
  require_io_error([&] { read_video_list(neg); }, {neg + ":1", ">= 0"});
}

namespace {
const char* class_ind =
    "1 ApplyEyeMakeup\r\n"
    "2 Archery\r\n"
    "3 HandstandPushups\r\n"
    "4 YoYo\r\n";
}

TEST_CASE("UCF101: classInd, trainlist (1-based → 0-based), testlist with the HandstandPushups quirk", "[data][ucf101]") {
  temp_dir t;
  t.write("classInd.txt", class_ind);
  t.write("trainlist01.txt",
          "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\r\n"
          "HandstandPushups/v_HandStandPushups_g08_c01.avi 3\r\n"
          "YoYo/v_YoYo_g25_c05.avi 4\r\n");
  t.write("testlist01.txt",
          "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\r\n"
          "HandstandPushups/v_HandStandPushups_g01_c01.avi\r\n"
          "v_HandStandPushups_g02_c01.avi\r\n"  // no directory: class from the v_<Class>_ prefix
          "Archery/v_Archery_g03_c02.avi");
  const dataset_split s = read_ucf101_split(t.path.string(), 1);
  REQUIRE(s.classes.size() == 4);
  CHECK(s.classes.names[2] == "HandstandPushups");
  CHECK(s.classes.find("handstandpushups") == 2);
  CHECK(s.classes.find("Nope") == -1);
  REQUIRE(s.train.size() == 3);
  CHECK(s.train[0].path == "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi");
  CHECK(s.train[0].label() == 0);
  CHECK(s.train[1].label() == 2);
  CHECK(s.train[2].label() == 3);
  REQUIRE(s.test.size() == 4);
  CHECK(s.test[0].label() == 0);
  CHECK(s.test[1].label() == 2);
  CHECK(s.test[2].label() == 2);
  CHECK(s.test[3].label() == 1);
  CHECK(s.test[3].line == 4);
}

TEST_CASE("UCF101: malformed split files", "[data][ucf101]") {
  temp_dir t;
  const class_index ci = read_class_index(t.write("classInd.txt", class_ind));
  const std::string tr = t.write("trainlist01.txt", "Archery/v_Archery_g01_c01.avi 2\r\nYoYo/v_YoYo_g01_c01.avi 5\r\n");
  require_io_error([&] { read_ucf101_trainlist(tr, ci); }, {tr + ":2", "class id 5 is out of range 1..4", "YoYo/v_YoYo_g01_c01.avi 5"});
  const std::string tr0 = t.write("trainlist02.txt", "Archery/v_Archery_g01_c01.avi 0\r\n");
  require_io_error([&] { read_ucf101_trainlist(tr0, ci); }, {tr0 + ":1", "out of range"});
  const std::string trx = t.write("trainlist03.txt", "Archery/v_Archery_g01_c01.avi 1\r\n");
  require_io_error([&] { read_ucf101_trainlist(trx, ci); }, {trx + ":1", "disagrees", "Archery"});
  const std::string trf = t.write("trainlist04.txt", "Archery/v_Archery_g01_c01.avi\r\n");
  require_io_error([&] { read_ucf101_trainlist(trf, ci); }, {trf + ":1", "2 fields"});
  const std::string te = t.write("testlist01.txt", "Archery/v_Archery_g01_c01.avi\nSkiing/v_Skiing_g01_c01.avi\n");
  require_io_error([&] { read_ucf101_testlist(te, ci); }, {te + ":2", "names no class", "Skiing/v_Skiing_g01_c01.avi"});
  const std::string c1 = t.write("ci1.txt", "1 A\n3 B\n");
  require_io_error([&] { read_class_index(c1); }, {c1 + ":2", "class id 3 is out of range 1..2"});
  const std::string c2 = t.write("ci2.txt", "1 A\n1 B\n");
  require_io_error([&] { read_class_index(c2); }, {c2 + ":2", "repeats line 1"});
  const std::string c3 = t.write("ci3.txt", "1 A extra\n");
  require_io_error([&] { read_class_index(c3); }, {c3 + ":1", "2 fields"});
}

TEST_CASE("HMDB51: split files from a directory, flags, sorted classes", "[data][hmdb51]") {
  temp_dir t;
  // Trailing spaces and a missing final newline as in the official files.
  t.write("wave_test_split1.txt", "w_a.avi 1 \nw_b.avi 2 \nw_c.avi 0 ");
  t.write("brush_hair_test_split1.txt", "April_09_brush_hair_u_nm_np1_ba_goo_0.avi 1 \nbh_b.avi 2 \n");
  t.write("shoot_ball_test_split1.txt", "sb_a.avi 2 \r\n");
  t.write("brush_hair_test_split2.txt", "bh_b.avi 1 \n");  // another split: ignored
  t.write("readme.txt", "not a split file");
  const dataset_split s = read_hmdb51_split(t.path.string(), 1);
  REQUIRE(s.classes.names == std::vector<std::string>{"brush_hair", "shoot_ball", "wave"});
  REQUIRE(s.train.size() == 2);
  CHECK(s.train[0].path == "brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0.avi");
  CHECK(s.train[0].label() == 0);
  CHECK(s.train[1].path == "wave/w_a.avi");
  CHECK(s.train[1].label() == 2);
  REQUIRE(s.test.size() == 3);
  CHECK(s.test[0].path == "brush_hair/bh_b.avi");
  CHECK(s.test[1].path == "shoot_ball/sb_a.avi");
  CHECK(s.test[1].label() == 1);
  CHECK(s.test[2].path == "wave/w_b.avi");
  CHECK(s.unused == 1);

  const std::string bad = t.write("bad/run_test_split1.txt", "r_a.avi 1\nr_b.avi 3\n");
  require_io_error([&] { read_hmdb51_split((t.path / "bad").string(), 1); }, {bad + ":2", "flag must be 0", "r_b.avi 3"});
  require_io_error([&] { read_hmdb51_split(t.path.string(), 3); }, {"_test_split3.txt"});
}

TEST_CASE("split lists: mmaction file names and formats", "[data][annotations]") {
  temp_dir t;
  t.write("classInd.txt", class_ind);
  t.write("trainlist01.txt", "Archery/v_Archery_g08_c01.avi 2\r\nYoYo/v_YoYo_g08_c02.avi 4\r\n");
  t.write("testlist01.txt", "Archery/v_Archery_g01_c01.avi\r\n");
  const dataset_split s = read_ucf101_split(t.path.string(), 1);
  const auto wv = write_split_lists(s, "ucf101", 1, t.path.string(), list_format::videos);
  CHECK(fs::path(wv.train_path).filename() == "ucf101_train_split_1_videos.txt");
  CHECK(fs::path(wv.val_path).filename() == "ucf101_val_split_1_videos.txt");
  CHECK(read_all(wv.train_path) == "Archery/v_Archery_g08_c01.avi 1\nYoYo/v_YoYo_g08_c02.avi 3\n");
  CHECK(read_all(wv.val_path) == "Archery/v_Archery_g01_c01.avi 1\n");
  // Frame counts from a callback; a negative count leaves the video out.
  auto count = [](const std::string& dir) -> std::int64_t {
    if (dir == "YoYo/v_YoYo_g08_c02") return -1;
    return std::int64_t(dir.size());
  };
  const auto wr = write_split_lists(s, "ucf101", 1, t.path.string(), list_format::rawframes, count);
  CHECK(fs::path(wr.train_path).filename() == "ucf101_train_split_1_rawframes.txt");
  CHECK(read_all(wr.train_path) == "Archery/v_Archery_g08_c01 25 1\n");
  CHECK(read_all(wr.val_path) == "Archery/v_Archery_g01_c01 25 1\n");
  REQUIRE(wr.skipped == std::vector<std::string>{"YoYo/v_YoYo_g08_c02.avi"});
  CHECK(wr.train == 1);
  CHECK_THROWS_AS(write_split_lists(s, "ucf101", 1, t.path.string(), list_format::rawframes), mscl::value_error);
  // The written list parses back.
  const auto back = read_rawframe_list(wr.train_path);
  REQUIRE(back.size() == 1);
  CHECK(back[0].total_frames == 25);
  CHECK(strip_extension("a.b/c") == "a.b/c");
  CHECK(strip_extension("a/c.webm") == "a/c");
}

TEST_CASE("SSv2: labels file, bracket stripping, train/val/test arrays", "[data][ssv2]") {
  temp_dir t;
  const std::string lp = t.write("labels.json",
                                 R"({"Approaching something with your camera": "0",
                                     "Holding something next to something": "1",
                                     "Pushing something from left to right": 2})");
  const ssv2_labels labels = read_ssv2_labels(lp);
  REQUIRE(labels.classes.size() == 3);
  CHECK(labels.classes.names[1] == "Holding something next to something");
  CHECK(labels.classes.names[2] == "Pushing something from left to right");
  CHECK(strip_template_brackets("Holding [something] next to [something]") == "Holding something next to something");

  const std::string tp = t.write("train.json", R"([
    {"id": "78687", "label": "holding potato next to vicks vaporub bottle",
     "template": "Holding [something] next to [something]", "placeholders": ["potato", "vicks vaporub bottle"]},
    {"id": "42326", "label": "pushing a pen from left to right",
     "template": "Pushing [something] from left to right", "placeholders": ["a pen"]}])");
  const auto tr = read_ssv2_annotations(tp, labels);
  REQUIRE(tr.size() == 2);
  CHECK(tr[0].id == "78687");
  CHECK(tr[0].label == 1);
  CHECK(tr[0].template_text == "Holding something next to something");
  CHECK(tr[0].placeholders == std::vector<std::string>{"potato", "vicks vaporub bottle"});
  CHECK(tr[1].label == 2);
  const auto vl = ssv2_to_video_list(tr);
  CHECK(vl[0].path == "78687.webm");
  CHECK(vl[1].label() == 2);

  const std::string test = t.write("test.json", R"([{"id": "1420"}, {"id": "7"}])");
  const auto te = read_ssv2_test(test);
  REQUIRE(te.size() == 2);
  CHECK(te[1].id == "7");
  CHECK(te[1].label == -1);
  CHECK_THROWS_AS(ssv2_to_video_list(te), mscl::value_error);

  const std::string unknown = t.write("bad.json", R"([{"id": "5", "template": "Dropping [something]"}])");
  require_io_error([&] { read_ssv2_annotations(unknown, labels); }, {unknown, "item 0", "id 5", "'Dropping something'"});
  const std::string notjson = t.write("nj.json", "[{\"id\": ");
  require_io_error([&] { read_ssv2_test(notjson); }, {notjson, "not valid JSON"});
  const std::string badidx = t.write("bl.json", R"({"A": "0", "B": "0"})");
  require_io_error([&] { read_ssv2_labels(badidx); }, {badidx, "used twice"});
  const std::string badidx2 = t.write("bl2.json", R"({"A": "x1"})");
  require_io_error([&] { read_ssv2_labels(badidx2); }, {badidx2, "'x1'"});
}
