// mscl-report: the last stage of the demo (scripts/demo.sh). Reads what the earlier stages wrote
// under one demo directory and writes DIR/report.md (side-by-side table, the bar, loss curves and
// retrieval pictures), DIR/summary.json, and prints the table.
//
//   mscl-report --dir runs/demo [--seeds 0,1,2] [--bar 10]
//
// Expected layout (what scripts/demo.sh produces):
//   DIR/seed<S>/mscl/log.jsonl, DIR/seed<S>/moco/log.jsonl          pretraining logs
//   DIR/seed<S>/{mscl,moco,random}.json                              mscl-retrieve --json (+ linear probe)
//   DIR/seed<S>/{mscl,moco,random}_grid.png                          mscl-retrieve --grid
//   DIR/supervised/metrics.json                                      mscl-finetune (the ceiling)
// A missing file is an error naming it: a report with silently empty cells would be wrong.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <mscl/core/error.hpp>
#include <mscl/io/atomic_file.hpp>
#include <mscl/viz/canvas.hpp>

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

const char* usage =
    "usage: mscl-report --dir DEMO_DIR [--seeds 0,1,2] [--bar 10]\n"
    "Writes DEMO_DIR/report.md, DEMO_DIR/summary.json and loss-curve PNGs from the demo's outputs and\n"
    "prints the side-by-side table. --bar: the required MSCL - MoCo-RGB margin in Recall@1 points.\n";

json read_json(const fs::path& p) {
  std::ifstream in(p);
  MSCL_CHECK(in.good(), mscl::io_error, "mscl-report: cannot open " << p.string() << " (did the stage that writes it run?)");
  try {
    return json::parse(in);
  } catch (const json::parse_error& e) {
    throw mscl::io_error("mscl-report: " + p.string() + " is not valid JSON: " + e.what());
  }
}

std::vector<json> read_jsonl(const fs::path& p) {
  std::ifstream in(p);
  MSCL_CHECK(in.good(), mscl::io_error, "mscl-report: cannot open " << p.string());
  std::vector<json> out;
  std::string line;
  long n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.empty()) continue;
    try {
      out.push_back(json::parse(line));
    } catch (const json::parse_error& e) {
      throw mscl::io_error("mscl-report: " + p.string() + ":" + std::to_string(n) + ": not JSON: " + e.what());
    }
  }
  return out;
}

// First value stored under `key` anywhere in j (metrics files nest differently per program).
const json* find_key(const json& j, const std::string& key) {
  if (j.is_object()) {
    auto it = j.find(key);
    if (it != j.end()) return &*it;
    for (auto& [k, v] : j.items())
      if (const json* r = find_key(v, key)) return r;
  }
  return nullptr;
}

struct method_result {
  std::map<std::string, double> recall;  // "1" -> R@1
  double probe = NAN;
  long steps = 0;
  double seconds = NAN;
};

method_result read_method(const fs::path& seed_dir, const std::string& name, bool pretrained) {
  method_result m;
  const json r = read_json(seed_dir / (name + ".json"));
  MSCL_CHECK(r.contains("recall"), mscl::io_error, "mscl-report: " << (seed_dir / (name + ".json")).string() << " has no \"recall\"");
  for (auto& [k, v] : r["recall"].items()) m.recall[k] = v.get<double>();
  if (r.contains("linear_probe")) m.probe = r["linear_probe"].value("top1", NAN);
  if (pretrained) {
    const auto log = read_jsonl(seed_dir / name / "log.jsonl");
    MSCL_CHECK(!log.empty(), mscl::io_error, "mscl-report: " << (seed_dir / name / "log.jsonl").string() << " is empty");
    m.steps = log.back().value("iteration", 0L);
    m.seconds = log.back().value("elapsed_s", NAN);
  }
  return m;
}

std::string pct(double v) {
  if (!std::isfinite(v)) return "—";
  char b[32];
  std::snprintf(b, sizeof b, "%.1f", 100.0 * v);
  return b;
}

// Loss curves of one pretraining run: every logged term, and its chance level ln(#candidates)
// is left to the reader (it depends on queue and batch size, printed in the table caption).
void loss_chart(const fs::path& log_path, const std::string& title, const fs::path& png) {
  const auto log = read_jsonl(log_path);
  std::map<std::string, mscl::viz::series> by_term;
  for (const auto& rec : log)
    for (auto& [k, v] : rec.items())
      if (k.rfind("loss", 0) == 0 && v.is_number()) {
        auto& s = by_term[k];
        s.name = k == "loss" ? "total" : k;
        s.x.push_back(rec.value("iteration", 0.0));
        s.y.push_back(v.get<double>());
      }
  std::vector<mscl::viz::series> all;
  for (auto& [k, s] : by_term)
    if (k != "loss") all.push_back(s);
  mscl::viz::line_chart_options o;
  o.title = title;
  o.x_label = "iteration";
  o.y_label = "InfoNCE loss (per term)";
  o.width = 720;
  o.height = 420;
  mscl::viz::line_chart(all, o).save_png(png.string());
}

}  // namespace

int main(int argc, char** argv) {
  try {
    std::string dir;
    std::vector<std::string> seeds{"0"};
    double bar = 10.0;
    for (int i = 1; i < argc; ++i) {
      const std::string k = argv[i];
      if (k == "--help" || k == "-h") {
        std::cout << usage;
        return 0;
      }
      MSCL_CHECK(i + 1 < argc, mscl::config_error, "mscl-report: " << k << " needs a value\n" << usage);
      const std::string v = argv[++i];
      if (k == "--dir") dir = v;
      else if (k == "--bar") bar = std::stod(v);
      else if (k == "--seeds") {
        seeds.clear();
        std::stringstream ss(v);
        std::string s;
        while (std::getline(ss, s, ',')) seeds.push_back(s);
      } else throw mscl::config_error("mscl-report: unknown option " + k + "\n" + usage);
    }
    MSCL_CHECK(!dir.empty(), mscl::config_error, "mscl-report: --dir is required\n" << usage);
    const fs::path root(dir);

    const json sup = read_json(root / "supervised" / "metrics.json");
    const json* sup_top1 = find_key(sup, "top1");
    MSCL_CHECK(sup_top1 && sup_top1->is_number(), mscl::io_error,
               "mscl-report: " << (root / "supervised" / "metrics.json").string() << " has no top1");
    const double ceiling = sup_top1->get<double>();

    std::ostringstream md, table;
    json summary = {{"supervised_top1", ceiling}, {"bar_points", bar}, {"seeds", json::array()}};
    md << "# mscl demo report\n\n"
       << "MSCL against the MoCo-RGB baseline on the built-in synthetic motion dataset (classes defined only\n"
       << "by motion), both pretrained with the same wall-clock budget, evaluated with the frozen RGB backbone:\n"
       << "retrieval (queries = test split, gallery = train split, Recall@k) and a linear probe (top-1).\n"
       << "Random init is the floor, supervised training of the same backbone the ceiling.\n"
       << "Produced by `scripts/demo.sh`; see docs/demo.md for the settings and why they are what they are.\n\n";
    table << "| seed | method | R@1 | R@5 | R@10 | R@20 | R@50 | linear probe | pretrain steps | pretrain s |\n"
          << "|---|---|---|---|---|---|---|---|---|---|\n";
    bool all_pass = true;
    for (const auto& seed : seeds) {
      const fs::path sd = root / ("seed" + seed);
      const method_result ms = read_method(sd, "mscl", true), mo = read_method(sd, "moco", true),
                          rnd = read_method(sd, "random", false);
      auto row = [&](const std::string& name, const method_result& m) {
        table << "| " << seed << " | " << name;
        for (const char* k : {"1", "5", "10", "20", "50"}) table << " | " << (m.recall.count(k) ? pct(m.recall.at(k)) : "—");
        table << " | " << pct(m.probe) << " | " << (m.steps ? std::to_string(m.steps) : "—") << " | ";
        if (std::isfinite(m.seconds)) table << long(std::lround(m.seconds));
        else table << "—";
        table << " |\n";
      };
      row("MSCL", ms);
      row("MoCo-RGB", mo);
      row("random init", rnd);
      const double margin = 100.0 * (ms.recall.at("1") - mo.recall.at("1"));
      const bool pass = margin >= bar;
      all_pass = all_pass && pass;
      summary["seeds"].push_back({{"seed", seed},
                                  {"mscl", {{"recall", ms.recall}, {"probe", ms.probe}, {"steps", ms.steps}}},
                                  {"moco", {{"recall", mo.recall}, {"probe", mo.probe}, {"steps", mo.steps}}},
                                  {"random", {{"recall", rnd.recall}, {"probe", rnd.probe}}},
                                  {"r1_margin_points", margin},
                                  {"pass", pass}});
      loss_chart(sd / "mscl" / "log.jsonl", "MSCL loss terms, seed " + seed, root / ("curves_mscl_seed" + seed + ".png"));
      loss_chart(sd / "moco" / "log.jsonl", "MoCo-RGB loss, seed " + seed, root / ("curves_moco_seed" + seed + ".png"));
    }
    summary["pass"] = all_pass;
    table << "| — | supervised (ceiling) | | | | | | " << pct(ceiling) << " (test top-1) | | |\n";

    md << "## Results\n\n" << table.str() << "\n";
    md << "Bar: MSCL R@1 − MoCo-RGB R@1 ≥ " << bar << " points on every seed: **" << (all_pass ? "met" : "NOT met")
       << "**; supervised ceiling ≥ 90 %: **" << (ceiling >= 0.9 ? "met" : "NOT met") << "**.\n\n";
    md << "## Loss curves\n\n";
    for (const auto& seed : seeds)
      md << "![MSCL seed " << seed << "](curves_mscl_seed" << seed << ".png)\n![MoCo-RGB seed " << seed << "](curves_moco_seed" << seed
         << ".png)\n\n";
    md << "Chance levels: a clip-level term with queue K and batch B has ln(K + B) at chance; LMCL ln 8.";
    {  // terms the MSCL run weighs 0 are still computed and logged: say so, or their curves mislead
      const fs::path cfg = root / ("seed" + seeds.front()) / "mscl" / "config.json";
      std::string unweighted;
      if (fs::exists(cfg)) {
        const json c = read_json(cfg);
        for (const auto& [key, term] : std::vector<std::pair<std::string, std::string>>{
                 {"w_rgb", "loss_cls"}, {"w_flow", "loss_cls_flow"}, {"w_flow_aug", "loss_cls_flow_aug"},
                 {"w_mx", "loss_cls_mx"}, {"w_mx_aug", "loss_cls_mx_aug"}, {"w_mx_r", "loss_cls_mx_r"},
                 {"w_mx_r_aug", "loss_cls_mx_r_aug"}, {"w_pos", "loss_pos"}})
          if (c.contains(key) && c.at(key).is_number() && c.at(key).get<double>() == 0.0)
            unweighted += (unweighted.empty() ? "" : ", ") + term;
      }
      if (!unweighted.empty())
        md << " Weighed 0 in the MSCL run's config.json, so logged but not trained (their curves may drift above chance): "
           << unweighted << ".";
      md << "\n\n";
    }
    md << "## Retrieval pictures (seed " << seeds.front() << ")\n\n"
       << "Each row: a test query (left) and its five nearest training videos, green when the class matches.\n\n";
    for (const char* m : {"mscl", "moco", "random"}) {
      const fs::path g = root / ("seed" + seeds.front()) / (std::string(m) + "_grid.png");
      if (fs::exists(g)) md << "**" << m << "**\n\n![" << m << "](seed" << seeds.front() << "/" << m << "_grid.png)\n\n";
    }
    mscl::io::write_file_atomic((root / "report.md").string(), md.str());
    mscl::io::write_file_atomic((root / "summary.json").string(), summary.dump(2) + "\n");
    std::cout << table.str() << "\nMSCL - MoCo-RGB R@1 >= " << bar << " points on every seed: " << (all_pass ? "met" : "NOT met")
              << "\nreport: " << (root / "report.md").string() << "\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "mscl-report: " << e.what() << "\n";
    return 1;
  }
}
