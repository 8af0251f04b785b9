// mscl-verify-dataset: checks an MMAction2 rawframes tree against its annotation list before a run
// starts (missing directories, frame-count mismatches, holes in the numbering, flow x/y counts,
// truncated or undecodable JPEGs, labels out of range) and prints a report. Exit status: 0 when
// everything is fine, 1 when problems were found, 2 for bad usage or an unreadable list.
//
//   mscl-verify-dataset --root data/ucf101/rawframes --list ucf101_train_split_1_rawframes.txt --classes 101
#include <cstdlib>
#include <iostream>
#include <map>
#include <string>

#include <mscl/data/annotations.hpp>
#include <mscl/data/rawframes.hpp>
#include <mscl/data/verify.hpp>

namespace {

const char* usage =
    "usage: mscl-verify-dataset --root DIR --list FILE [options]\n"
    "Checks every entry of an mmaction rawframe list ('frame_dir total_frames label') against the\n"
    "frame directories under DIR.\n"
    "\n"
    "options:\n"
    "  --classes K            labels must lie in [0, K)\n"
    "  --with-offset          the list is 'frame_dir offset total_frames label'\n"
    "  --multi-label          allow several labels per line\n"
    "  --counts rgb|flow      what the list's total_frames count (default rgb; flow lists count flow steps)\n"
    "  --require-flow         a directory without flow files is a problem\n"
    "  --no-flow-check        do not compare flow counts with RGB counts\n"
    "  --decode-every N       fully decode frames 0, N, 2N, ... of every video (RGB and flow)\n"
    "  --no-file-check        skip opening every file (marker check for truncation)\n"
    "  --rgb-template T       RGB file template, e.g. 'img_{:05d}.jpg' (default: detected)\n"
    "  --flow-template T      flow template with a direction slot, e.g. 'flow_{}_{:05d}.jpg' (default: detected)\n"
    "  --start-index N        RGB numbering start (default: 0 if a file 0 exists, else 1)\n"
    "  --flow-start-index N   flow numbering start (default: detected likewise)\n"
    "  --examples N           examples shown per problem kind (default 5)\n"
    "  --help                 this text\n"
    "\n"
    "exit status: 0 all entries fine, 1 problems found, 2 bad usage or unreadable list\n";

long to_long(const std::string& flag, const std::string& v) {
  std::size_t used = 0;
  long x = 0;
  try {
    x = std::stol(v, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != v.size() || v.empty()) {
    std::cerr << "mscl-verify-dataset: " << flag << " needs an integer, got '" << v << "'\n";
    std::exit(2);
  }
  return x;
}

}  // namespace

int main(int argc, char** argv) {
  std::map<std::string, std::string> opts;
  const std::map<std::string, bool> known = {
      {"--root", true},           {"--list", true},          {"--classes", true},       {"--with-offset", false},
      {"--multi-label", false},   {"--counts", true},        {"--require-flow", false}, {"--no-flow-check", false},
      {"--decode-every", true},   {"--no-file-check", false}, {"--rgb-template", true}, {"--flow-template", true},
      {"--start-index", true},    {"--flow-start-index", true}, {"--examples", true},   {"--help", false}};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const auto it = known.find(a);
    if (it == known.end()) {
      std::cerr << "mscl-verify-dataset: unknown argument '" << a << "'\n" << usage;
      return 2;
    }
    if (it->second) {
      if (i + 1 >= argc) {
        std::cerr << "mscl-verify-dataset: " << a << " needs a value\n";
        return 2;
      }
      opts[a] = argv[++i];
    } else {
      opts[a] = "1";
    }
  }
  if (opts.count("--help")) {
    std::cout << usage;
    return 0;
  }
  if (!opts.count("--root") || !opts.count("--list")) {
    std::cerr << "mscl-verify-dataset: --root and --list are required\n" << usage;
    return 2;
  }
  try {
    mscl::data::list_options lo;
    lo.with_offset = opts.count("--with-offset") > 0;
    lo.multi_label = opts.count("--multi-label") > 0;
    const auto entries = mscl::data::read_rawframe_list(opts["--list"], lo);

    mscl::data::verify_options vo;
    if (opts.count("--classes")) vo.num_classes = int(to_long("--classes", opts["--classes"]));
    if (opts.count("--decode-every")) vo.decode_every = to_long("--decode-every", opts["--decode-every"]);
    if (opts.count("--examples")) vo.max_examples = std::size_t(std::max(0L, to_long("--examples", opts["--examples"])));
    if (opts.count("--counts")) {
      const std::string c = opts["--counts"];
      if (c != "rgb" && c != "flow") {
        std::cerr << "mscl-verify-dataset: --counts must be rgb or flow, got '" << c << "'\n";
        return 2;
      }
      vo.counts_are_flow = c == "flow";
    }
    vo.with_offset = lo.with_offset;
    vo.require_flow = opts.count("--require-flow") > 0;
    vo.check_flow = opts.count("--no-flow-check") == 0;
    vo.check_files = opts.count("--no-file-check") == 0;
    if (opts.count("--rgb-template")) vo.frames.rgb = mscl::data::frame_template::parse(opts["--rgb-template"]);
    if (opts.count("--flow-template"))
      vo.frames.flow_xy = mscl::data::frame_template::parse_flow(opts["--flow-template"]);
    if (opts.count("--start-index")) vo.frames.rgb_start = int(to_long("--start-index", opts["--start-index"]));
    if (opts.count("--flow-start-index"))
      vo.frames.flow_start = int(to_long("--flow-start-index", opts["--flow-start-index"]));

    const mscl::data::verify_report rep = mscl::data::verify_rawframes(opts["--root"], entries, vo);
    std::cout << "list '" << opts["--list"] << "'\n";
    rep.print(std::cout);
    return rep.ok() ? 0 : 1;
  } catch (const std::exception& e) {
    std::cerr << "mscl-verify-dataset: " << e.what() << "\n";
    return 2;
  }
}
