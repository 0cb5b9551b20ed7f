#include "bench_util.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <sstream>

namespace lbkit_bench {

std::vector<std::string> SplitList(const std::string& value) {
  std::vector<std::string> out;
  std::stringstream in(value);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

int ParseInt(const std::string& flag, const std::string& value, int min, int max) {
  char* end = nullptr;
  errno = 0;
  long parsed = std::strtol(value.c_str(), &end, 10);
  if (value.empty() || *end != '\0' || errno != 0 || parsed < min || parsed > max) {
    throw UsageError(flag + ": expected a whole number from " + std::to_string(min) + " to " +
                     std::to_string(max) + ", got \"" + value + "\"");
  }
  return static_cast<int>(parsed);
}

std::chrono::nanoseconds ParseDuration(const std::string& flag, const std::string& value,
                                       bool allow_zero) {
  char* end = nullptr;
  double number = std::strtod(value.c_str(), &end);
  std::string unit = end;
  double scale = 0;
  if (unit.empty() || unit == "s") {
    scale = 1e9;
  } else if (unit == "ms") {
    scale = 1e6;
  } else if (unit == "us") {
    scale = 1e3;
  } else if (unit == "m") {
    scale = 60e9;
  }
  double nanos = number * scale;
  if (value.empty() || end == value.c_str() || scale == 0 || !(nanos >= 0) ||
      (!allow_zero && nanos < 1e6) || nanos > 3600e9) {
    throw UsageError(flag + ": expected a duration such as 2s, 200ms or 1.5s" +
                     std::string(allow_zero ? "" : " (at least 1ms)") + ", got \"" + value + "\"");
  }
  return std::chrono::nanoseconds(static_cast<int64_t>(nanos));
}

std::vector<std::string> ParseNames(const std::string& flag, const std::string& value,
                                    const std::vector<std::string>& allowed) {
  std::vector<std::string> names = SplitList(value);
  if (names.empty()) throw UsageError(flag + ": empty list");
  std::vector<std::string> ordered;  // in the canonical order, without repeats
  for (const std::string& name : names) {
    if (std::find(allowed.begin(), allowed.end(), name) == allowed.end()) {
      std::string choices;
      for (const std::string& a : allowed) choices += (choices.empty() ? "" : ", ") + a;
      throw UsageError(flag + ": unknown name \"" + name + "\" (choose from " + choices + ")");
    }
  }
  for (const std::string& a : allowed) {
    if (std::find(names.begin(), names.end(), a) != names.end()) ordered.push_back(a);
  }
  return ordered;
}

std::string FormatDuration(std::chrono::nanoseconds d) {
  char buf[32];
  double ms = std::chrono::duration<double, std::milli>(d).count();
  if (ms < 1000) {
    std::snprintf(buf, sizeof buf, "%gms", ms);
  } else {
    std::snprintf(buf, sizeof buf, "%gs", ms / 1000);
  }
  return buf;
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

double PercentileUs(std::vector<uint32_t>& v, double q) {
  if (v.empty()) return 0;
  size_t rank = static_cast<size_t>(q * static_cast<double>(v.size()));
  if (rank >= v.size()) rank = v.size() - 1;
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(rank), v.end());
  return v[rank] / 1000.0;
}

bool FlagWalker::Next() {
  if (next_ >= argc_) return false;
  arg_ = argv_[next_++];
  name_ = arg_;
  value_.clear();
  has_value_ = false;
  const size_t eq = arg_.find('=');
  if (arg_.rfind("--", 0) == 0 && eq != std::string::npos) {
    name_ = arg_.substr(0, eq);
    value_ = arg_.substr(eq + 1);
    has_value_ = true;
  }
  if (name_ == "--help" || name_ == "-h") {
    std::fputs(usage_, stdout);
    std::exit(0);
  }
  return true;
}

std::string FlagWalker::Value() {
  if (has_value_) return value_;
  if (next_ >= argc_) throw UsageError(name_ + ": missing value");
  return argv_[next_++];
}

void FlagWalker::Unknown() const { throw UsageError("unknown flag \"" + arg_ + "\""); }

}  // namespace lbkit_bench
