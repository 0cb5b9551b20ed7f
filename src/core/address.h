// Address checks: every address is checked before a subchannel is made for
// it, so that one gRPC cannot use fails at once with a reason instead of
// leaving a channel CONNECTING for ever.
#ifndef LBKIT_SRC_CORE_ADDRESS_H_
#define LBKIT_SRC_CORE_ADDRESS_H_

#include <string>

#include <grpcpp/support/status.h>

namespace lbkit {
namespace internal {

// OK for "host:port" (a DNS name or an IPv4 literal), "[ipv6]:port",
// "unix:path", "unix:///abs/path" and "unix-abstract:name"; otherwise
// INVALID_ARGUMENT naming the address and what is wrong with it: no or empty
// host, a port outside 1..65535, an unbracketed or malformed IPv6 literal, a
// host with characters no DNS name has, a socket path longer than the
// system's limit.
grpc::Status CheckAddress(const std::string& address);

}  // namespace internal
}  // namespace lbkit

#endif  // LBKIT_SRC_CORE_ADDRESS_H_
