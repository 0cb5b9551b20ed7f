// A tiny --name=value / --name value flag reader for the example programs.
#ifndef LBKIT_EXAMPLES_FLAGS_H_
#define LBKIT_EXAMPLES_FLAGS_H_

#include <cstdlib>
#include <map>
#include <string>
#include <vector>

namespace lbkit_example {

class Flags {
 public:
  // Parses argv. Unknown flags and missing values are errors (see error()).
  Flags(int argc, char** argv, const std::map<std::string, std::string>& defaults,
        const std::vector<std::string>& switches = {})
      : values_(defaults) {
    for (int i = 1; i < argc; ++i) {
      std::string arg = argv[i];
      if (arg.rfind("--", 0) != 0) {
        error_ = "unexpected argument " + arg;
        return;
      }
      std::string name = arg.substr(2);
      std::string value;
      size_t eq = name.find('=');
      bool is_switch = name == "help";  // a value never follows --help
      for (const std::string& s : switches) is_switch |= (s == name);
      if (eq != std::string::npos) {
        value = name.substr(eq + 1);
        name = name.substr(0, eq);
      } else if (is_switch) {
        value = "true";
      } else if (i + 1 < argc) {
        value = argv[++i];
      } else {
        error_ = "missing value for --" + name;
        return;
      }
      if (name == "help") {
        help_ = true;
        continue;
      }
      if (values_.count(name) == 0) {
        error_ = "unknown flag --" + name;
        return;
      }
      values_[name] = value;
      given_.push_back(name);
    }
  }

  const std::string& error() const { return error_; }
  bool help() const { return help_; }
  const std::string& Get(const std::string& name) const { return values_.at(name); }
  // Whether the flag was on the command line (even with an empty value).
  bool Has(const std::string& name) const {
    for (const std::string& given : given_) {
      if (given == name) return true;
    }
    return false;
  }
  // The flag as a whole number in [min, max]; false (and error set) otherwise.
  bool GetInt(const std::string& name, long min, long max, long* out) {
    const std::string& text = Get(name);
    char* end = nullptr;
    long value = std::strtol(text.c_str(), &end, 10);
    if (text.empty() || *end != '\0' || value < min || value > max) {
      error_ = "--" + name + " must be a whole number from " + std::to_string(min) + " to " +
               std::to_string(max) + ", got \"" + text + "\"";
      return false;
    }
    *out = value;
    return true;
  }

 private:
  std::map<std::string, std::string> values_;
  std::vector<std::string> given_;
  std::string error_;
  bool help_ = false;
};

// Splits "a,b,c"; empty items are dropped.
inline std::vector<std::string> SplitList(const std::string& list) {
  std::vector<std::string> items;
  size_t start = 0;
  while (start <= list.size()) {
    size_t end = list.find(',', start);
    if (end == std::string::npos) end = list.size();
    if (end > start) items.push_back(list.substr(start, end - start));
    start = end + 1;
  }
  return items;
}

}  // namespace lbkit_example

#endif  // LBKIT_EXAMPLES_FLAGS_H_
