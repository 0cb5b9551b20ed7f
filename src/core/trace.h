// lbkit's log lines. Every one goes through gRPC's log facility
// (gpr_log_message), so GRPC_VERBOSITY filters them and gpr_set_log_function
// receives them, with the file and line of the lbkit code that logged.
//
// Severities (gpr has DEBUG, INFO and ERROR, no WARNING):
//   - LogLine: ERROR. A fact an operator must see (a rejected config, a
//     resolver error, a policy that threw): gRPC's default verbosity, ERROR,
//     shows it.
//   - Trace: INFO, like gRPC's own tracers. Shown when LBKIT_TRACE turns the
//     category on and GRPC_VERBOSITY is INFO or DEBUG; when LBKIT_TRACE asks
//     for lines GRPC_VERBOSITY would hide, one ERROR line says so.
//
// LBKIT_TRACE: comma-separated categories (resolver, policy, subchannel,
// pick, or all). Read once per process, at the first trace point reached (not
// at load time, so that a gpr_set_log_function made first in main() also
// receives the warning about a category lbkit does not know, which is logged
// once).
#ifndef LBKIT_SRC_CORE_TRACE_H_
#define LBKIT_SRC_CORE_TRACE_H_

#include <functional>
#include <sstream>
#include <string>
#include <vector>

namespace lbkit {
namespace internal {

enum class TraceFlag : unsigned {
  kResolver = 1u << 0,
  kPolicy = 1u << 1,
  kSubchannel = 1u << 2,
  kPick = 1u << 3,
};

// Parses a LBKIT_TRACE value into a flag mask. Names it does not know are
// ignored, and appended to `unknown` when given (empty names, as in "a,,b",
// are not names).
unsigned ParseTraceFlags(const std::string& value, std::vector<std::string>* unknown = nullptr);
// What the LBKIT_TRACE value `value` (null: unset) turns on; logs one
// warning naming the categories it does not know and listing those it does.
// TraceFlags() calls it once per process.
unsigned TraceFlagsFromEnvironment(const char* value);
// The flags in force: LBKIT_TRACE's, unless a test set others.
unsigned TraceFlags();
inline bool TraceEnabled(TraceFlag flag) {
  return (TraceFlags() & static_cast<unsigned>(flag)) != 0;
}

// A trace point: the category, and the caller's file and line, which the
// default arguments capture where Trace(TraceFlag::kPick, ...) is written
// (a TraceFlag converts implicitly).
struct TraceSite {
  // NOLINTNEXTLINE(google-explicit-constructor): Trace(TraceFlag::k..., ...)
  TraceSite(TraceFlag flag, const char* file = __builtin_FILE(), int line = __builtin_LINE())
      : flag(flag), file(file), line(line) {}
  TraceFlag flag;
  const char* file;
  int line;
};

// Logs one trace line at INFO, prefixed with "lbkit <flag>: ".
void TraceLine(TraceFlag flag, const std::string& line, const char* file = __builtin_FILE(),
               int source_line = __builtin_LINE());
// Logs a line at ERROR, prefixed with "lbkit: " (a fact an operator must
// see once; callers rate-limit what could repeat).
void LogLine(const std::string& line, const char* file = __builtin_FILE(),
             int source_line = __builtin_LINE());

// Tests: turn on `flags` and copy every trace and log line to `sink` (which
// must be thread-safe), whatever GRPC_VERBOSITY says; pass nullptr to restore
// LBKIT_TRACE's flags. Lines still go to gRPC's log as well.
void SetTraceForTesting(unsigned flags, std::function<void(const std::string&)> sink);

template <typename... Args>
[[gnu::noinline, gnu::cold]] void TraceFormatted(const TraceSite& site, const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  TraceLine(site.flag, out.str(), site.file, site.line);
}

// Logs when `site`'s flag is on. The check is inline; formatting is out of
// line, so a disabled trace costs a call, one relaxed load and a branch.
template <typename... Args>
inline void Trace(TraceSite site, const Args&... args) {
  if (TraceEnabled(site.flag)) TraceFormatted(site, args...);
}

}  // namespace internal
}  // namespace lbkit

#endif  // LBKIT_SRC_CORE_TRACE_H_
