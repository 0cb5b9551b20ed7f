#include "core/trace.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <mutex>

namespace lbkit {
namespace internal {

unsigned ParseTraceFlags(const std::string& value) {
  unsigned flags = 0;
  size_t start = 0;
  while (start <= value.size()) {
    size_t end = value.find(',', start);
    if (end == std::string::npos) end = value.size();
    std::string name = value.substr(start, end - start);
    if (name == "all") flags |= ~0u;
    if (name == "resolver") flags |= static_cast<unsigned>(TraceFlag::kResolver);
    if (name == "policy") flags |= static_cast<unsigned>(TraceFlag::kPolicy);
    if (name == "subchannel") flags |= static_cast<unsigned>(TraceFlag::kSubchannel);
    if (name == "pick") flags |= static_cast<unsigned>(TraceFlag::kPick);
    start = end + 1;
  }
  return flags;
}

namespace {

unsigned EnvironmentFlags() {
  static const unsigned flags = [] {
    const char* value = std::getenv("LBKIT_TRACE");
    return value == nullptr ? 0u : ParseTraceFlags(value);
  }();
  return flags;
}

std::atomic<unsigned> g_flags{EnvironmentFlags()};
std::mutex g_sink_mu;
std::function<void(const std::string&)>* g_sink = nullptr;  // guarded by g_sink_mu

void Emit(const std::string& line) {
  std::fprintf(stderr, "%s\n", line.c_str());
  std::lock_guard<std::mutex> lock(g_sink_mu);
  if (g_sink != nullptr) (*g_sink)(line);
}

}  // namespace

unsigned TraceFlags() { return g_flags.load(std::memory_order_relaxed); }

void SetTraceForTesting(unsigned flags, std::function<void(const std::string&)> sink) {
  std::lock_guard<std::mutex> lock(g_sink_mu);
  delete g_sink;
  g_sink = sink ? new std::function<void(const std::string&)>(std::move(sink)) : nullptr;
  g_flags.store(g_sink != nullptr ? flags : EnvironmentFlags());
}

void LogLine(const std::string& line) { Emit("lbkit: " + line); }

void TraceLine(TraceFlag flag, const std::string& line) {
  const char* name = "?";
  switch (flag) {
    case TraceFlag::kResolver:
      name = "resolver";
      break;
    case TraceFlag::kPolicy:
      name = "policy";
      break;
    case TraceFlag::kSubchannel:
      name = "subchannel";
      break;
    case TraceFlag::kPick:
      name = "pick";
      break;
  }
  Emit(std::string("lbkit ") + name + ": " + line);
}

}  // namespace internal
}  // namespace lbkit
