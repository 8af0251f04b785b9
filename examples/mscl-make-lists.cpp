// mscl-make-lists: official split files -> MMAction2 annotation lists, so that UCF101 / HMDB51
// arrive without hand conversion (ECOSYSTEM.md §1).
//
//   mscl-make-lists --dataset ucf101 --splits ucfTrainTestlist --split 1 --root data/ucf101/rawframes --out-dir data/ucf101
//   mscl-make-lists --dataset hmdb51 --splits testTrainMulti_7030_splits --split 1 --format videos --out-dir data/hmdb51
//
// Rawframes lists (`Class/video N label`, 0-based labels) count the frames under --root (flow
// frames with --count flow); videos missing there are left out and listed. Writes
// <dataset>_train_split_<k>_<format>.txt and <dataset>_val_split_<k>_<format>.txt, MMAction2's names.
// Split-file problems (CRLF, 1-based ids, the HandstandPushups spelling) are handled by
// data/annotations.hpp; a malformed line is an error naming file and line.
#include <iostream>
#include <string>

#include <mscl/data/annotations.hpp>
#include <mscl/data/rawframes.hpp>

namespace {
const char* usage =
    "usage: mscl-make-lists --dataset ucf101|hmdb51 --splits DIR --split 1|2|3 --out-dir DIR\n"
    "         [--format rawframes|videos] [--root RAWFRAMES_ROOT] [--count rgb|flow]\n"
    "rawframes (default) needs --root to count frames; videos writes `Class/v.avi label`.\n";
}

int main(int argc, char** argv) {
  try {
    std::string dataset, splits, out_dir, format = "rawframes", root, count = "rgb";
    int k = 1;
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      if (a == "--help" || a == "-h") {
        std::cout << usage;
        return 0;
      }
      MSCL_CHECK(i + 1 < argc, mscl::config_error, "mscl-make-lists: " << a << " needs a value\n" << usage);
      const std::string v = argv[++i];
      if (a == "--dataset") dataset = v;
      else if (a == "--splits") splits = v;
      else if (a == "--split") k = std::stoi(v);
      else if (a == "--out-dir") out_dir = v;
      else if (a == "--format") format = v;
      else if (a == "--root") root = v;
      else if (a == "--count") count = v;
      else throw mscl::config_error("mscl-make-lists: unknown option " + a + "\n" + usage);
    }
    MSCL_CHECK(dataset == "ucf101" || dataset == "hmdb51", mscl::config_error,
               "mscl-make-lists: --dataset must be ucf101 or hmdb51\n" << usage);
    MSCL_CHECK(!splits.empty() && !out_dir.empty(), mscl::config_error, "mscl-make-lists: --splits and --out-dir are required\n" << usage);
    MSCL_CHECK(format == "rawframes" || format == "videos", mscl::config_error, "mscl-make-lists: --format must be rawframes or videos");
    MSCL_CHECK(format == "videos" || !root.empty(), mscl::config_error, "mscl-make-lists: rawframes lists need --root to count frames");
    MSCL_CHECK(count == "rgb" || count == "flow", mscl::config_error, "mscl-make-lists: --count must be rgb or flow");
    const mscl::data::dataset_split split =
        dataset == "ucf101" ? mscl::data::read_ucf101_split(splits, k) : mscl::data::read_hmdb51_split(splits, k);
    std::filesystem::create_directories(out_dir);
    const auto fmt = format == "videos" ? mscl::data::list_format::videos : mscl::data::list_format::rawframes;
    mscl::data::frame_count_fn counter;
    if (fmt == mscl::data::list_format::rawframes)
      counter = mscl::data::rawframes_counter(root, count == "rgb" ? mscl::data::frame_kind::rgb : mscl::data::frame_kind::flow);
    const auto w = mscl::data::write_split_lists(split, dataset, k, out_dir, fmt, counter);
    std::cout << "wrote " << w.train_path << " (" << w.train << " videos) and " << w.val_path << " (" << w.val << " videos); "
              << split.classes.names.size() << " classes\n";
    if (!w.skipped.empty()) {
      std::cerr << "mscl-make-lists: " << w.skipped.size() << " videos have no frames under " << root << ", left out; first: "
                << w.skipped.front() << "\n";
      return 1;
    }
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "mscl-make-lists: " << e.what() << "\n";
    return 2;
  }
}
