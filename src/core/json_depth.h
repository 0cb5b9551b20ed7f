// How deep a JSON text nests, counted before parsing it: nlohmann's dump()
// (and other code that walks a parsed value) recurses once per level, so a
// parser of outside input refuses deep nesting first.
#ifndef LBKIT_SRC_CORE_JSON_DEPTH_H_
#define LBKIT_SRC_CORE_JSON_DEPTH_H_

#include <string_view>

namespace lbkit {
namespace internal {

// The deepest nesting of arrays and objects in `json`, brackets inside
// strings not counted; stops counting once past `limit`. Any bytes; never
// throws.
int JsonNestingDepth(std::string_view json, int limit);

}  // namespace internal
}  // namespace lbkit

#endif  // LBKIT_SRC_CORE_JSON_DEPTH_H_
