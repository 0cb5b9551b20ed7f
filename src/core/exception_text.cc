#include "core/exception_text.h"

#include <exception>

#include "core/shown_text.h"

namespace lbkit {
namespace internal {

std::string CurrentExceptionText() noexcept {
  try {
    try {
      throw;
    } catch (const std::exception& e) {
      return Shown(e.what());
    } catch (...) {
      return "an exception not derived from std::exception";
    }
  } catch (...) {
    // Out of memory while formatting: say something rather than throw.
    return {};
  }
}

}  // namespace internal
}  // namespace lbkit
