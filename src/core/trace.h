// LBKIT_TRACE: comma-separated flags (resolver, policy, subchannel, pick, or
// all) that turn on logging to stderr. Read once, at first use.
#ifndef LBKIT_SRC_CORE_TRACE_H_
#define LBKIT_SRC_CORE_TRACE_H_

#include <functional>
#include <sstream>
#include <string>

namespace lbkit {
namespace internal {

enum class TraceFlag : unsigned {
  kResolver = 1u << 0,
  kPolicy = 1u << 1,
  kSubchannel = 1u << 2,
  kPick = 1u << 3,
};

// Parses a LBKIT_TRACE value into a flag mask; unknown names are ignored.
unsigned ParseTraceFlags(const std::string& value);
// The flags in force: LBKIT_TRACE's, unless a test set others.
unsigned TraceFlags();
inline bool TraceEnabled(TraceFlag flag) {
  return (TraceFlags() & static_cast<unsigned>(flag)) != 0;
}
// Writes one line to stderr, prefixed with "lbkit <flag>:".
void TraceLine(TraceFlag flag, const std::string& line);
// Writes a line that is always shown (a fact an operator must see once).
void LogLine(const std::string& line);

// Tests: turn on `flags` and copy every trace and log line to `sink` (which
// must be thread-safe); pass nullptr to restore LBKIT_TRACE and stderr only.
void SetTraceForTesting(unsigned flags, std::function<void(const std::string&)> sink);

template <typename... Args>
[[gnu::noinline, gnu::cold]] void TraceFormatted(TraceFlag flag, const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  TraceLine(flag, out.str());
}

// Logs when `flag` is on. The check is inline; formatting is out of line, so
// a disabled trace costs one relaxed load and a branch.
template <typename... Args>
inline void Trace(TraceFlag flag, const Args&... args) {
  if (TraceEnabled(flag)) TraceFormatted(flag, args...);
}

}  // namespace internal
}  // namespace lbkit

#endif  // LBKIT_SRC_CORE_TRACE_H_
