// Pieces lbkit-bench's scenarios share: flag parsing with clear messages,
// duration formatting, medians and percentiles.
#ifndef LBKIT_TOOLS_BENCH_UTIL_H_
#define LBKIT_TOOLS_BENCH_UTIL_H_

#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace lbkit_bench {

// A bad flag: main() prints it with a pointer to --help and exits with 2.
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// "a,b,,c" -> {"a", "b", "c"}.
std::vector<std::string> SplitList(const std::string& value);

// A whole number in [min, max], or UsageError naming `flag`.
int ParseInt(const std::string& flag, const std::string& value, int min, int max);

// "2s", "200ms", "1.5s", "500us", "1m"; a bare number is seconds. At least 1ms
// unless `allow_zero`; at most an hour.
std::chrono::nanoseconds ParseDuration(const std::string& flag, const std::string& value,
                                       bool allow_zero);

// A comma list of names from `allowed`, returned in `allowed`'s order without
// repeats; an unknown or missing name is a UsageError listing the choices.
std::vector<std::string> ParseNames(const std::string& flag, const std::string& value,
                                    const std::vector<std::string>& allowed);

// "250ms", "2s", "1.5s".
std::string FormatDuration(std::chrono::nanoseconds d);

double Median(std::vector<double> v);

// Nearest-rank percentile (q in [0, 1]) of `v`, in microseconds when `v`
// holds nanoseconds; 0 when empty. Reorders `v`.
double PercentileUs(std::vector<uint32_t>& v, double q);

// Walks the flags argv[first..argc) one by one:
//
//   FlagWalker flags(argc, argv, 1, kUsage);
//   while (flags.Next()) {
//     if (flags.name() == "--rounds") rounds = ParseInt(flags.name(), flags.Value(), 1, 9);
//     else flags.Unknown();
//   }
//
// Next() prints `usage` and exits 0 on --help or -h.
class FlagWalker {
 public:
  FlagWalker(int argc, char** argv, int first, const char* usage)
      : argc_(argc), argv_(argv), next_(first), usage_(usage) {}
  // Moves to the next flag; false when none is left.
  bool Next();
  // "--rounds" for both "--rounds 3" and "--rounds=3".
  const std::string& name() const { return name_; }
  // The flag's value: after '=', or else the next argument (consumed).
  // UsageError when there is none.
  std::string Value();
  // Throws the UsageError for a flag nobody knows.
  [[noreturn]] void Unknown() const;

 private:
  const int argc_;
  char** const argv_;
  int next_;
  const char* const usage_;
  std::string arg_, name_, value_;
  bool has_value_ = false;
};

}  // namespace lbkit_bench

#endif  // LBKIT_TOOLS_BENCH_UTIL_H_
