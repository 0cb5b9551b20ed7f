#include "core/trace.h"

#include <grpc/support/log.h>

#include <atomic>
#include <cstdlib>
#include <mutex>

#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace lbkit {
namespace internal {

namespace {

struct Category {
  const char* name;
  unsigned flags;
};
constexpr unsigned kAllFlags =
    static_cast<unsigned>(TraceFlag::kResolver) | static_cast<unsigned>(TraceFlag::kPolicy) |
    static_cast<unsigned>(TraceFlag::kSubchannel) | static_cast<unsigned>(TraceFlag::kPick);
constexpr Category kCategories[] = {
    {"resolver", static_cast<unsigned>(TraceFlag::kResolver)},
    {"policy", static_cast<unsigned>(TraceFlag::kPolicy)},
    {"subchannel", static_cast<unsigned>(TraceFlag::kSubchannel)},
    {"pick", static_cast<unsigned>(TraceFlag::kPick)},
    {"all", kAllFlags},
};

// g_flags before LBKIT_TRACE has been read: a bit no category uses.
constexpr unsigned kUnread = 1u << 31;
static_assert((kAllFlags & kUnread) == 0, "kUnread must not be a category");

std::atomic<unsigned> g_flags{kUnread};
std::mutex g_sink_mu;
std::function<void(const std::string&)>* g_sink = nullptr;  // guarded by g_sink_mu

// gRPC reads GRPC_VERBOSITY in grpc_init(); lbkit can log, or ask whether
// INFO is shown, before its first gRPC channel exists. gpr_log_verbosity_init
// reads it then, unless a verbosity is set already (by grpc_init or by
// gpr_set_log_verbosity), which it leaves alone.
void ReadVerbosity() {
  static std::once_flag once;
  std::call_once(once, gpr_log_verbosity_init);
}

void Emit(gpr_log_severity severity, const char* file, int line, const std::string& message) {
  {
    std::lock_guard<std::mutex> lock(g_sink_mu);
    if (g_sink != nullptr) (*g_sink)(message);
  }
  ReadVerbosity();
  gpr_log_message(file, line, severity, message.c_str());
}

// LBKIT_TRACE's flags, read (and warned about) once per process.
unsigned EnvironmentFlags() {
  static const unsigned flags = [] {
    const unsigned parsed = TraceFlagsFromEnvironment(std::getenv("LBKIT_TRACE"));
    ReadVerbosity();
    if (parsed != 0 && !gpr_should_log(GPR_LOG_SEVERITY_INFO)) {
      Emit(GPR_LOG_SEVERITY_ERROR, __FILE__, __LINE__,
           "lbkit: LBKIT_TRACE is set, but its lines are INFO and GRPC_VERBOSITY hides them: "
           "set GRPC_VERBOSITY=INFO (or DEBUG) to see them");
    }
    return parsed;
  }();
  return flags;
}

}  // namespace

unsigned ParseTraceFlags(const std::string& value, std::vector<std::string>* unknown) {
  unsigned flags = 0;
  for (absl::string_view name : absl::StrSplit(value, ',', absl::SkipEmpty())) {
    bool known = false;
    for (const Category& category : kCategories) {
      if (name == category.name) {
        flags |= category.flags;
        known = true;
      }
    }
    if (!known && unknown != nullptr) unknown->emplace_back(name);
  }
  return flags;
}

unsigned TraceFlagsFromEnvironment(const char* value) {
  if (value == nullptr) return 0;
  std::vector<std::string> unknown;
  const unsigned flags = ParseTraceFlags(value, &unknown);
  if (!unknown.empty()) {
    std::vector<std::string> known;
    for (const Category& category : kCategories) known.emplace_back(category.name);
    Emit(GPR_LOG_SEVERITY_ERROR, __FILE__, __LINE__,
         "lbkit: LBKIT_TRACE names unknown categor" +
             std::string(unknown.size() == 1 ? "y " : "ies ") + "\"" +
             absl::StrJoin(unknown, "\", \"") + "\" (ignored); the known ones are " +
             absl::StrJoin(known, ", "));
  }
  return flags;
}

unsigned TraceFlags() {
  unsigned flags = g_flags.load(std::memory_order_relaxed);
  if (__builtin_expect((flags & kUnread) != 0, 0)) {
    unsigned expected = kUnread;
    // A test may have set flags meanwhile: those win.
    g_flags.compare_exchange_strong(expected, EnvironmentFlags(), std::memory_order_relaxed);
    flags = g_flags.load(std::memory_order_relaxed);
  }
  return flags;
}

void SetTraceForTesting(unsigned flags, std::function<void(const std::string&)> sink) {
  const unsigned restored = sink ? flags & kAllFlags : EnvironmentFlags();
  std::lock_guard<std::mutex> lock(g_sink_mu);
  delete g_sink;
  g_sink = sink ? new std::function<void(const std::string&)>(std::move(sink)) : nullptr;
  g_flags.store(restored);
}

void LogLine(const std::string& line, const char* file, int source_line) {
  Emit(GPR_LOG_SEVERITY_ERROR, file, source_line, "lbkit: " + line);
}

void TraceLine(TraceFlag flag, const std::string& line, const char* file, int source_line) {
  const char* name = "?";
  for (const Category& category : kCategories) {
    if (category.flags == static_cast<unsigned>(flag)) name = category.name;
  }
  Emit(GPR_LOG_SEVERITY_INFO, file, source_line, std::string("lbkit ") + name + ": " + line);
}

}  // namespace internal
}  // namespace lbkit
