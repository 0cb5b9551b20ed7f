// What a caught exception says, for error messages and logs.
#ifndef LBKIT_SRC_CORE_EXCEPTION_TEXT_H_
#define LBKIT_SRC_CORE_EXCEPTION_TEXT_H_

#include <string>

namespace lbkit {
namespace internal {

// Inside a catch block: the caught exception's what(), Shown() (bounded,
// printable), or a fixed text for an exception not derived from
// std::exception. Never throws.
std::string CurrentExceptionText() noexcept;

}  // namespace internal
}  // namespace lbkit

#endif  // LBKIT_SRC_CORE_EXCEPTION_TEXT_H_
