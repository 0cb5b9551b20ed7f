// Addresses: the one place that splits, joins and checks "host:port".
// Every address is checked before a subchannel is made for it, so that one
// gRPC cannot use fails at once with a reason instead of leaving a channel
// CONNECTING for ever.
#ifndef LBKIT_SRC_CORE_ADDRESS_H_
#define LBKIT_SRC_CORE_ADDRESS_H_

#include <string>

#include <absl/strings/string_view.h>
#include <grpcpp/support/status.h>

namespace lbkit {
namespace internal {

struct HostPort {
  std::string host;        // without the brackets of "[v6]"
  std::string port;        // empty when none was given
  bool has_port = false;   // "host:" has an empty port
  bool bracketed = false;  // the host was written "[...]"
};

// Splits "host", "host:port", "[v6]", "[v6]:port" or an unbracketed IPv6
// literal (two or more ':', no port), as gRPC's SplitHostPort does.
// INVALID_ARGUMENT for a '[' without ']', brackets around something that is
// not an IPv6 address (a "%zone" may follow it), text after ']' that is not
// ":port", an empty host, or an empty port after ':'.
grpc::Status SplitHostPort(absl::string_view text, HostPort* out);

// "host:port", with a host holding ':' (IPv6) in brackets.
std::string JoinHostPort(absl::string_view host, absl::string_view port);

// AF_INET or AF_INET6 for an IP literal host (an IPv6 one may carry a
// "%zone"; no brackets), else 0.
int IpFamily(absl::string_view host);

// IpFamily of the host of "host:port" or "[v6]:port"; 0 for a name, a unix
// socket or text that does not split.
int AddressIpFamily(absl::string_view address);

// Whether "host:port" names the wildcard host (0.0.0.0 or [::], in any
// spelling), which means "every interface" to a server and nothing to a
// client.
bool IsWildcardAddress(absl::string_view address);

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
