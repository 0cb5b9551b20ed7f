// The "dns" scheme (include/lbkit/dns_resolver.h): the parts that are pure
// functions, exposed for tests.
#ifndef LBKIT_SRC_RESOLVERS_DNS_H_
#define LBKIT_SRC_RESOLVERS_DNS_H_

#include <string>

#include "lbkit/resolver.h"

namespace lbkit {
namespace internal {

// What a dns target names.
struct DnsTarget {
  std::string host;     // the name, or an IP literal (without brackets)
  std::string port;     // "443" when the target gives none
  std::string address;  // set for an IP literal host: "host:port" or "[v6]:port"
  std::string server;   // the DNS server as "ip:port" or "[v6]:port"; empty: the system's
};

// Parses `target` (scheme "dns"). Returns INVALID_ARGUMENT naming the problem
// (without the target: the caller adds it).
grpc::Status ParseDnsTarget(const Target& target, DnsTarget* parsed);

// What a client is, for choosing among gRFC A2 service config choices.
struct ServiceConfigClient {
  std::string hostname;  // compared exactly with "clientHostname" entries
  int percentile = 100;  // 1..100: a choice with "percentage" p applies when percentile <= p
};

// Applies gRFC A2 to `txt`, the value of a "grpc_config=" TXT record (a JSON
// list of choices): the first choice matching `client` (clientLanguage
// absent, empty or holding "c++" in any case; percentage; clientHostname)
// gives *service_config, its "serviceConfig" as compact JSON; "" when no
// choice matches. Returns INVALID_ARGUMENT naming the problem when the list
// or any choice is malformed (not JSON, not a list, a choice with an unknown
// field, a percentage that is not a whole number from 0 to 100, a missing or
// non-object serviceConfig, ...): as A2 says, the whole config is then
// invalid.
grpc::Status ChooseServiceConfig(const std::string& txt, const ServiceConfigClient& client,
                                 std::string* service_config);

}  // namespace internal
}  // namespace lbkit

#endif  // LBKIT_SRC_RESOLVERS_DNS_H_
