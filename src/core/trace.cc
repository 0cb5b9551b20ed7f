#include "core/trace.h"

#include <cstdio>
#include <cstdlib>

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

unsigned TraceFlags() {
  static const unsigned flags = [] {
    const char* value = std::getenv("LBKIT_TRACE");
    return value == nullptr ? 0u : ParseTraceFlags(value);
  }();
  return flags;
}

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
  std::fprintf(stderr, "lbkit %s: %s\n", name, line.c_str());
}

}  // namespace internal
}  // namespace lbkit
