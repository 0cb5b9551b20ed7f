// Endpoint attributes as text: the "key=value;key=value" that follows an
// address in a static target ("static:///10.0.0.1:50051;weight=3;zone=eu").
// A fuzzer calls ParseEndpointAttributes directly: it must never crash, hang
// or grow without bound, whatever the bytes.
#ifndef LBKIT_SRC_CORE_ENDPOINT_ATTRIBUTES_H_
#define LBKIT_SRC_CORE_ENDPOINT_ATTRIBUTES_H_

#include <cstddef>
#include <string_view>

#include <grpcpp/support/status.h>

#include "lbkit/resolver.h"

namespace lbkit {
namespace internal {

// The longest attribute text one endpoint may have, in bytes.
constexpr size_t kMaxEndpointAttributesText = 4096;

// Parses "key=value;key=value" (the part after the address in a static
// target; empty text: no attributes). Keys:
//   weight    a whole number from 1 to 4294967295, decimal digits only (no
//             sign, space, leading zero or other junk)
//   hash_key  any value
//   other     kept in `values` under that key
// Keys and values are non-empty and hold no control byte, whitespace, ',',
// ';' or '=' (a static target has no way to escape them).
//
// Requires `attributes` non-null. On success overwrites *attributes (fields
// the text does not name get their defaults) and returns OK. Otherwise
// returns INVALID_ARGUMENT naming the problem and quoting the bad part
// (bounded, control bytes escaped), and leaves *attributes unchanged: an
// empty key or value, a pair without '=', a key given twice, a bad weight, a
// character that cannot be represented, text longer than
// kMaxEndpointAttributesText. Thread-safe.
grpc::Status ParseEndpointAttributes(std::string_view text, EndpointAttributes* attributes);

}  // namespace internal
}  // namespace lbkit

#endif  // LBKIT_SRC_CORE_ENDPOINT_ATTRIBUTES_H_
