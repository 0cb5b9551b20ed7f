// Text from outside the program (a service config, an exception's what()) as
// it appears in error messages and logs: bounded and printable.
#ifndef LBKIT_SRC_CORE_BOUNDED_TEXT_H_
#define LBKIT_SRC_CORE_BOUNDED_TEXT_H_

#include <cstddef>
#include <string>
#include <string_view>

namespace lbkit {
namespace internal {

// At most `max` bytes of `text`, control bytes as \xNN, and the full size
// after "..." when cut: a huge config is not copied into every failing call's
// status, and a NUL byte does not cut the message short.
std::string Shown(std::string_view text, std::size_t max = 200);

// Inside a catch block: the caught exception's what(), Shown(), or a fixed
// text for an exception not derived from std::exception. Never throws.
std::string CurrentExceptionText() noexcept;

}  // namespace internal
}  // namespace lbkit

#endif  // LBKIT_SRC_CORE_BOUNDED_TEXT_H_
