#include "bench_util.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <sstream>

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

double Percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  const double rank = std::ceil(q * static_cast<double>(v.size()));
  size_t index = rank < 1 ? 0 : static_cast<size_t>(rank) - 1;
  if (index >= v.size()) index = v.size() - 1;
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(index), v.end());
  return v[index];
}

void RaiseFileLimit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
}

double ProcessCpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](const timeval& tv) {
    return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6;
  };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

std::map<std::string, ThreadGroup> ThreadsByName() {
  std::map<std::string, ThreadGroup> by_name;
  const double tick = static_cast<double>(sysconf(_SC_CLK_TCK));
  DIR* dir = opendir("/proc/self/task");
  if (dir == nullptr) return by_name;
  while (dirent* entry = readdir(dir)) {
    if (entry->d_name[0] == '.') continue;
    std::string base = std::string("/proc/self/task/") + entry->d_name;
    std::ifstream stat_file(base + "/stat");
    std::string stat((std::istreambuf_iterator<char>(stat_file)), std::istreambuf_iterator<char>());
    // "tid (name) state ...": the name may hold spaces and parentheses.
    size_t close_paren = stat.rfind(')');
    if (close_paren == std::string::npos) continue;  // ended while we read
    std::string name = stat.substr(stat.find('(') + 1, close_paren - stat.find('(') - 1);
    std::istringstream fields(stat.substr(close_paren + 2));
    std::string field;
    double utime = 0, stime = 0;
    for (int i = 3; fields >> field; ++i) {  // field 3 is the state
      if (i == 14) utime = std::stod(field);
      if (i == 15) {
        stime = std::stod(field);
        break;
      }
    }
    ThreadGroup& group = by_name[name];
    ++group.count;
    group.cpu_seconds += (utime + stime) / tick;
  }
  closedir(dir);
  return by_name;
}

std::map<std::string, double> ThreadCpuSeconds() {
  std::map<std::string, double> cpu;
  for (const auto& [name, group] : ThreadsByName()) cpu[name] = group.cpu_seconds;
  return cpu;
}

}  // namespace lbkit_bench
