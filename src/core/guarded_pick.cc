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

// A picker that throws on every call must not write a line per call.
std::atomic<int64_t> g_last_log_ns{0};  // 0: never
std::atomic<uint64_t> g_unlogged{0};

}  // namespace

PickResult PickThrew(const Picker& picker) noexcept {
  try {
    const std::string message =
        "lbkit: picker " + TypeName(typeid(picker)) + " threw: " + CurrentExceptionText();
    const int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                            std::chrono::steady_clock::now().time_since_epoch())
                            .count();
    int64_t last = g_last_log_ns.load(std::memory_order_relaxed);
    if ((last == 0 || now - last >= 1'000'000'000) &&
        g_last_log_ns.compare_exchange_strong(last, now, std::memory_order_relaxed)) {
      const uint64_t unlogged = g_unlogged.exchange(0, std::memory_order_relaxed);
      LogLine(message + "; the call fails with INTERNAL" +
              (unlogged == 0
                   ? std::string()
                   : " (" + std::to_string(unlogged) + " more since the last such line)"));
    } else {
      g_unlogged.fetch_add(1, std::memory_order_relaxed);
    }
    return PickResult::Fail(grpc::Status(grpc::StatusCode::INTERNAL, message));
  } catch (...) {  // out of memory while saying so
    return PickResult::Fail(grpc::Status(grpc::StatusCode::INTERNAL, "lbkit: a picker threw"));
  }
}

}  // namespace internal
}  // namespace lbkit
