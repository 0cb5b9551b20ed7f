// Quoting input in error messages, one way for every parser (service config,
// addresses, targets, endpoint attributes).
#ifndef LBKIT_SRC_CORE_SHOWN_TEXT_H_
#define LBKIT_SRC_CORE_SHOWN_TEXT_H_

#include <cstddef>
#include <string>
#include <string_view>

namespace lbkit {
namespace internal {

// A bounded, printable excerpt of `text` for an error message: at most
// `max` bytes of it, then "... (N bytes)" when it was longer, so a huge input
// is not copied into every failing call's status; control bytes (NUL
// included) as \xNN, so that a NUL byte does not cut the message short and a
// newline does not break a log line; bytes from 0x7f up too, so that the
// result is plain ASCII: valid UTF-8 whatever the input, even cut at `max`
// (a JSON encoder, nlohmann's among them, throws on invalid UTF-8).
std::string Shown(std::string_view text, size_t max = 200);

}  // namespace internal
}  // namespace lbkit

#endif  // LBKIT_SRC_CORE_SHOWN_TEXT_H_
