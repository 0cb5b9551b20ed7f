// pick_first, as gRPC specifies it: tries an endpoint's addresses in order,
// starting the next attempt after a connection-attempt delay while earlier
// ones continue (Happy Eyeballs, gRFC A61); the first to become READY wins.
// When every address has failed it reports TRANSIENT_FAILURE and stays there
// (sticky, gRFC A62) while the connections retry under gRPC's backoff. A
// READY connection that drops sends it IDLE and asks for re-resolution.
//
// Config: {"shuffleAddressList": bool} (gRFC A62).
#ifndef LBKIT_SRC_POLICIES_PICK_FIRST_H_
#define LBKIT_SRC_POLICIES_PICK_FIRST_H_

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "lbkit/balancer.h"

namespace lbkit {
namespace internal {

std::shared_ptr<const BalancerBuilder> MakePickFirstBuilder();

// Happy Eyeballs order (RFC 8305, gRFC A61): when both IPv6 and IPv4 literals
// are present, alternate families starting with the first address's; other
// addresses (names, unix sockets) follow in their original order.
std::vector<std::string> InterleaveAddressFamilies(const std::vector<std::string>& addresses);

// The Happy Eyeballs connection-attempt delay (250 ms by default), for tests.
void SetConnectionAttemptDelayForTesting(std::chrono::milliseconds delay);
std::chrono::milliseconds ConnectionAttemptDelay();

}  // namespace internal
}  // namespace lbkit

#endif  // LBKIT_SRC_POLICIES_PICK_FIRST_H_
