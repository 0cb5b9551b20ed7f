// The "static" scheme: "static:///host:port,host:port" gives one endpoint per
// address, once, with no service config.
#ifndef LBKIT_SRC_RESOLVERS_STATIC_H_
#define LBKIT_SRC_RESOLVERS_STATIC_H_

#include <memory>
#include <string>
#include <vector>

#include "lbkit/resolver.h"

namespace lbkit {
namespace internal {

std::shared_ptr<const ResolverFactory> MakeStaticResolverFactory();

// Splits and checks a comma-separated address list. Returns INVALID_ARGUMENT
// naming the first bad address (empty, no port, port not a number 1-65535).
grpc::Status ParseAddressList(const std::string& list, std::vector<std::string>* addresses);

}  // namespace internal
}  // namespace lbkit

#endif  // LBKIT_SRC_RESOLVERS_STATIC_H_
