// The "static" scheme: "static:///host:port,host:port" gives one endpoint per
// comma-separated item, once, with no service config. An item may carry
// endpoint attributes after ';': "static:///10.0.0.1:50051;weight=3;zone=eu,10.0.0.2:50051".
#ifndef LBKIT_SRC_RESOLVERS_STATIC_H_
#define LBKIT_SRC_RESOLVERS_STATIC_H_

#include <memory>
#include <string>
#include <vector>

#include "lbkit/resolver.h"

namespace lbkit {
namespace internal {

std::shared_ptr<const ResolverFactory> MakeStaticResolverFactory();

// Splits and checks a comma-separated endpoint list, each item an address
// (spaces and tabs around it ignored) optionally followed by ";key=value..."
// attributes (ParseEndpointAttributes). Returns INVALID_ARGUMENT naming the
// first bad item (empty, a bad address, bad attributes); on success sets
// *endpoints, one single-address endpoint per item, in order.
grpc::Status ParseEndpointList(const std::string& list, std::vector<Endpoint>* endpoints);

}  // namespace internal
}  // namespace lbkit

#endif  // LBKIT_SRC_RESOLVERS_STATIC_H_
