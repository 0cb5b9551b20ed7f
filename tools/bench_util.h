// Pieces lbkit-bench's scenarios share: their flags' types, duration
// formatting, medians and percentiles, and what this process's threads cost.
#ifndef LBKIT_TOOLS_BENCH_UTIL_H_
#define LBKIT_TOOLS_BENCH_UTIL_H_

#include <chrono>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

namespace lbkit_bench {

// A bad combination of flags, found after parsing: main() prints it with a
// pointer to --help and exits with 2.
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Flag types for CLI11 (parsed by lbkit_example::ParseCommandLine, cli.h).

// --name D: "2s", "200ms", "1.5s", "500us", "1m"; a bare number is seconds.
// At least 1ms unless `allow_zero`; at most an hour. `*out` holds the default.
CLI::Option* AddDuration(CLI::App& app, const std::string& name, std::chrono::nanoseconds* out,
                         bool allow_zero, const std::string& help);

// --name LIST: a comma list of names from `allowed`, stored in `allowed`'s
// order without repeats; an unknown name is an error listing the choices.
// `*out` holds the default.
CLI::Option* AddNames(CLI::App& app, const std::string& name, std::vector<std::string>* out,
                      const std::vector<std::string>& allowed, const std::string& help);

// --json FILE: also write the results as JSON to FILE (not empty).
CLI::Option* AddJsonPath(CLI::App& app, std::string* out);

// "250ms", "2s", "1.5s".
std::string FormatDuration(std::chrono::nanoseconds d);

double Median(std::vector<double> v);

// Nearest-rank percentile (q in [0, 1]) of `v`, in microseconds when `v`
// holds nanoseconds; 0 when empty. Reorders `v`.
double PercentileUs(std::vector<uint32_t>& v, double q);

// Nearest-rank percentile (q in (0, 1]) of `v`: the smallest value with at
// least q of the values at or below it; 0 when empty.
double Percentile(std::vector<double> v, double q);

// Raises the soft limit on open files to the hard one: each listener, each
// client connection and each accepted one is a file descriptor, and a
// thousand endpoints need more than the usual 1024.
void RaiseFileLimit();

// User + system CPU time of the whole process, every thread.
double ProcessCpuSeconds();

// This process's live threads (/proc/self/task), by name (/proc's comm, at
// most 15 bytes): how many, and their CPU seconds. A thread that has ended
// is in neither.
struct ThreadGroup {
  int count = 0;
  double cpu_seconds = 0;
};
std::map<std::string, ThreadGroup> ThreadsByName();

// The CPU seconds of ThreadsByName(), by name.
std::map<std::string, double> ThreadCpuSeconds();

}  // namespace lbkit_bench

#endif  // LBKIT_TOOLS_BENCH_UTIL_H_
