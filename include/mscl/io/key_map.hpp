/// \file key_map.hpp
/// \brief Prefix rename / drop rules that turn foreign state-dict keys into mscl's (torchvision) names.
///
/// Checkpoints in circulation nest the same `r3d_18` weights under different prefixes: MSCL
/// pretraining stores the query encoder under `recognizer.encoder_q.`, MMAction fine-tuned models
/// under `backbone.` with a `cls_head.` classifier, torchvision at the top level (ECOSYSTEM §4.2).
/// Rather than hard-coding those, loaders take a `key_map`: an ordered list of prefix rules.
///
/// Semantics of `apply(key)`:
///  - rules are tried in order; the FIRST rule whose prefix starts `key` decides;
///  - a rename rule replaces that prefix with its replacement (an empty replacement strips it);
///  - a drop rule returns `std::nullopt` (the key is not loaded);
///  - a key that no rule matches passes through unchanged (unless a catch-all rule `*` is present);
///  - a rule is applied once: the result is not fed through the rules again.
///
/// String syntax (`key_map::parse`), e.g. `"recognizer.encoder_q.=,recognizer.=DROP,*=DROP"`:
///  - rules separated by `,` (newlines and `;` also separate); spaces around rules and around `=`
///    are ignored, so keys cannot begin or end with spaces in this form;
///  - `PREFIX=REPLACEMENT` renames, `PREFIX=` strips, `PREFIX=DROP` drops (the word `DROP` is
///    reserved: a prefix cannot be renamed to the literal text "DROP" in the string form);
///  - `*` as PREFIX matches every key (`*=DROP`: keep only keys matched by earlier rules;
///    `*=backbone.` prepends `backbone.` to every remaining key);
///  - an empty string is the identity map; an empty PREFIX or a rule without `=` is a
///    `mscl::config_error` naming the rule and its position.
///  Keys containing `,`, `;`, `=` or a newline need the programmatic API (`rename`, `drop`).
#pragma once
#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "../core/error.hpp"

namespace mscl::io {

class key_map {
 public:
  struct rule {
    std::string prefix;       ///< matched against the start of the key; ignored when `any`
    std::string replacement;  ///< substituted for `prefix` (rename rules only)
    bool drop = false;        ///< true: matching keys are dropped
    bool any = false;         ///< true: the rule matches every key (`*` in the string form)
  };

  key_map() = default;

  /// Adds a rule that replaces `prefix` by `replacement` (empty: strip). Chainable.
  key_map& rename(std::string prefix, std::string replacement) {
    rules_.push_back(rule{std::move(prefix), std::move(replacement), false, false});
    return *this;
  }
  /// Adds a rule dropping keys that start with `prefix`. Chainable.
  key_map& drop(std::string prefix) {
    rules_.push_back(rule{std::move(prefix), {}, true, false});
    return *this;
  }
  /// Catch-all rule: drop every key not matched by an earlier rule.
  key_map& drop_rest() {
    rules_.push_back(rule{{}, {}, true, true});
    return *this;
  }
  /// Catch-all rule: prepend `prefix` to every key not matched by an earlier rule.
  key_map& prefix_rest(std::string prefix) {
    rules_.push_back(rule{{}, std::move(prefix), false, true});
    return *this;
  }

  const std::vector<rule>& rules() const { return rules_; }
  bool empty() const { return rules_.empty(); }

  /// The new name of `key`, or nullopt when a drop rule matches it.
  std::optional<std::string> apply(const std::string& key) const {
    for (const rule& r : rules_) {
      if (!r.any && key.compare(0, r.prefix.size(), r.prefix) != 0) continue;
      if (r.drop) return std::nullopt;
      if (r.any) return r.replacement + key;
      return r.replacement + key.substr(r.prefix.size());
    }
    return key;
  }

  /// Maps a whole list of keys: result maps NEW name -> ORIGINAL name (dropped keys absent).
  /// Throws config_error when two keys land on the same new name (naming both and the new name).
  std::map<std::string, std::string> apply_all(const std::vector<std::string>& keys) const {
    std::map<std::string, std::string> out;
    for (const std::string& k : keys) {
      auto mapped = apply(k);
      if (!mapped) continue;
      auto [it, inserted] = out.emplace(*mapped, k);
      MSCL_CHECK(inserted, config_error,
                 "key_map::apply_all: keys '" << it->second << "' and '" << k << "' both map to '" << *mapped
                                              << "'; add a drop rule for one of them (map: " << to_string()
                                              << ")");
    }
    return out;
  }

  /// The string form, parseable by `parse` (when no prefix contains a separator).
  std::string to_string() const {
    std::string s;
    for (std::size_t i = 0; i < rules_.size(); ++i) {
      if (i) s += ',';
      s += rules_[i].any ? std::string("*") : rules_[i].prefix;
      s += '=';
      s += rules_[i].drop ? std::string("DROP") : rules_[i].replacement;
    }
    return s;
  }

  /// Parses the string syntax documented at the top of this file.
  static key_map parse(const std::string& text) {
    key_map m;
    std::size_t pos = 0, index = 0;
    while (pos <= text.size()) {
      std::size_t end = text.find_first_of(",;\n", pos);
      if (end == std::string::npos) end = text.size();
      const std::string item = trim(text.substr(pos, end - pos));
      if (!item.empty()) {
        ++index;
        const auto eq = item.find('=');
        MSCL_CHECK(eq != std::string::npos, config_error,
                   "key_map::parse: rule " << index << " '" << item
                                           << "' has no '='; expected PREFIX=REPLACEMENT, PREFIX= or PREFIX=DROP in '"
                                           << text << "'");
        const std::string from = trim(item.substr(0, eq));
        const std::string to = trim(item.substr(eq + 1));
        MSCL_CHECK(!from.empty(), config_error,
                   "key_map::parse: rule " << index << " '" << item
                                           << "' has an empty prefix; use '*' to match every key, in '" << text
                                           << "'");
        MSCL_CHECK(to.find('=') == std::string::npos, config_error,
                   "key_map::parse: rule " << index << " '" << item << "' has more than one '=' in '" << text
                                           << "'");
        if (from == "*")
          m.rules_.push_back(rule{{}, to == "DROP" ? std::string() : to, to == "DROP", true});
        else if (to == "DROP")
          m.drop(from);
        else
          m.rename(from, to);
      }
      if (end == text.size()) break;
      pos = end + 1;
    }
    return m;
  }

 private:
  static std::string trim(const std::string& s) {
    const auto b = s.find_first_not_of(" \t\r");
    if (b == std::string::npos) return {};
    const auto e = s.find_last_not_of(" \t\r");
    return s.substr(b, e - b + 1);
  }

  std::vector<rule> rules_;
};

}  // namespace mscl::io
