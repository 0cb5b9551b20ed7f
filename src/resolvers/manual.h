// The "manual" scheme: a target such as "manual:///" served by the
// ManualResolver the program puts in ChannelOptions::resolver.
#ifndef LBKIT_SRC_RESOLVERS_MANUAL_H_
#define LBKIT_SRC_RESOLVERS_MANUAL_H_

#include <memory>

#include "lbkit/resolver.h"

namespace lbkit {
namespace internal {

// Its Create always fails, saying that a ManualResolver must be given in
// ChannelOptions::resolver (which bypasses factories).
std::shared_ptr<const ResolverFactory> MakeManualResolverFactory();

}  // namespace internal
}  // namespace lbkit

#endif  // LBKIT_SRC_RESOLVERS_MANUAL_H_
