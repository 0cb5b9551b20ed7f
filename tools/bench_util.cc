#include "bench_util.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "cli.h"

namespace lbkit_bench {

CLI::Option* AddDuration(CLI::App& app, const std::string& name, std::chrono::nanoseconds* out,
                         bool allow_zero, const std::string& help) {
  auto parse = [name, out, allow_zero](const std::string& value) {
    char* end = nullptr;
    const double number = std::strtod(value.c_str(), &end);
    const std::string unit = end;
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
    const double nanos = number * scale;
    if (value.empty() || end == value.c_str() || scale == 0 || !(nanos >= 0) ||
        (!allow_zero && nanos < 1e6) || nanos > 3600e9) {
      throw CLI::ValidationError(name, "expected a duration such as 2s, 200ms or 1.5s" +
                                           std::string(allow_zero ? "" : " (at least 1ms)") +
                                           ", got \"" + value + "\"");
    }
    *out = std::chrono::nanoseconds(static_cast<int64_t>(nanos));
  };
  return app.add_option_function<std::string>(name, parse,
                                              help + " (default " + FormatDuration(*out) + ")");
}

CLI::Option* AddNames(CLI::App& app, const std::string& name, std::vector<std::string>* out,
                      const std::vector<std::string>& allowed, const std::string& help) {
  auto store = [out, allowed](const std::vector<std::string>& names) {
    out->clear();  // in the canonical order, without repeats
    for (const std::string& a : allowed) {
      if (std::find(names.begin(), names.end(), a) != names.end()) out->push_back(a);
    }
  };
  return app.add_option_function<std::vector<std::string>>(name, store, help)
      ->delimiter(',')
      ->check(CLI::IsMember(allowed));
}

CLI::Option* AddJsonPath(CLI::App& app, std::string* out) {
  return app.add_option("--json", *out, "also write the results as JSON to FILE")
      ->type_name("FILE")
      ->check(lbkit_example::NonEmpty("file name"));
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

}  // namespace lbkit_bench
