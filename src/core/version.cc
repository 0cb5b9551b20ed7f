#include "lbkit/version.h"

namespace lbkit {

// Compiled into the library: the header a user includes can be newer or
// older than this, which is what the comparison is for.
const char* Version() { return LBKIT_VERSION_STRING; }

}  // namespace lbkit
