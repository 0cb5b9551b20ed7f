#include "core/guarded_pick.h"

#include <cxxabi.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <typeinfo>

#include "core/exception_text.h"
#include "core/trace.h"

namespace lbkit {
namespace internal {
namespace {

// "customlb::CustomRoundRobinPicker" rather than its mangled name.
std::string TypeName(const std::type_info& type) {
  int status = 0;
  char* demangled = abi::__cxa_demangle(type.name(), nullptr, nullptr, &status);
  std::string name = status == 0 && demangled != nullptr ? demangled : type.name();
  std::free(demangled);
  return name;
}

// At most one line a second per kind of failure: a picker (or callback) that
// throws on every call must not write a line per call.
class RateLimitedLog {
 public:
  void Log(const std::string& message) {
    const int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                            std::chrono::steady_clock::now().time_since_epoch())
                            .count();
    int64_t last = last_log_ns_.load(std::memory_order_relaxed);
    if ((last == 0 || now - last >= 1'000'000'000) &&
        last_log_ns_.compare_exchange_strong(last, now, std::memory_order_relaxed)) {
      const uint64_t unlogged = unlogged_.exchange(0, std::memory_order_relaxed);
      LogLine(message + (unlogged == 0 ? std::string()
                                       : " (" + std::to_string(unlogged) +
                                             " more since the last such line)"));
    } else {
      unlogged_.fetch_add(1, std::memory_order_relaxed);
    }
  }

 private:
  std::atomic<int64_t> last_log_ns_{0};  // 0: never
  std::atomic<uint64_t> unlogged_{0};
};

RateLimitedLog g_pick_log;
RateLimitedLog g_done_log;

}  // namespace

PickResult PickThrew(const Picker& picker) noexcept {
  try {
    const std::string message =
        "lbkit: picker " + TypeName(typeid(picker)) + " threw: " + CurrentExceptionText();
    g_pick_log.Log(message + "; the call fails with INTERNAL");
    return PickResult::Fail(grpc::Status(grpc::StatusCode::INTERNAL, message));
  } catch (...) {  // out of memory while saying so
    return PickResult::Fail(grpc::Status(grpc::StatusCode::INTERNAL, "lbkit: a picker threw"));
  }
}

void DoneThrew() noexcept {
  try {
    g_done_log.Log("lbkit: a pick's done-callback threw: " + CurrentExceptionText() +
                   "; ignored (the call's status is unaffected)");
  } catch (...) {  // out of memory while saying so
  }
}

}  // namespace internal
}  // namespace lbkit
