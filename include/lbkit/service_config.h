// gRPC's service config JSON: loadBalancingConfig (and the older
// loadBalancingPolicy string), healthCheckConfig, methodConfig and
// retryThrottling. docs/service-config.md says how each field is honoured.
//
// Thread-safety: pure functions; thread-safe.
#ifndef LBKIT_SERVICE_CONFIG_H_
#define LBKIT_SERVICE_CONFIG_H_

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/support/status.h>
#include <nlohmann/json.hpp>

#include "lbkit/balancer.h"
#include "lbkit/export.h"

namespace lbkit {

namespace internal {
class MethodConfigTable;
}  // namespace internal

struct LBKIT_EXPORT ServiceConfig {
  std::string policy_name;                       // the chosen policy
  std::shared_ptr<const BalancerConfig> config;  // its parsed config, never null
  // "healthCheckConfig": {"serviceName": "..."} turns on client-side health
  // checking (gRFC A17) for every subchannel of the channel.
  bool health_check = false;
  std::string health_check_service;
  // "methodConfig" and "retryThrottling", parsed; null when the config has
  // neither. Opaque: only lbkit's channel reads it (docs/service-config.md).
  std::shared_ptr<const internal::MethodConfigTable> method_config;
  // One sentence per field that was accepted but is not honoured
  // (hedgingPolicy, unknown fields of a methodConfig entry), naming the
  // entry; a channel shows them in ChannelSnapshot::config_warnings.
  std::vector<std::string> warnings;
};

// Limits checked before the JSON is parsed, so that input from outside the
// program (a resolver, DNS TXT records, a file) cannot exhaust the stack or
// memory of the thread parsing it (the channel's work serializer's, one of
// lbkit's threads shared by every channel) inside the JSON library:
//   kMaxServiceConfigBytes: 4 MiB, gRPC's default limit on a received
//     message, so a config fetched over gRPC (etcd, a control plane) could not
//     be larger anyway; real configs are a few KiB. Parsing one this size
//     takes some tens of milliseconds on the channel's work serializer, which
//     keeps one of those threads from other channels' work meanwhile.
//   kMaxServiceConfigDepth: 64 nested arrays/objects, gRPC's own JSON
//     reader's limit.
inline constexpr std::size_t kMaxServiceConfigBytes = 4 * 1024 * 1024;
inline constexpr int kMaxServiceConfigDepth = 64;

// Parses `json` (empty: no config, which means pick_first). loadBalancingConfig
// is a list of one-key objects; the first whose policy is registered wins and
// unknown names are skipped. Returns INVALID_ARGUMENT naming the problem for
// input over the limits above, invalid JSON, a malformed list, a list with no
// registered policy, a config the chosen policy rejects, a malformed
// healthCheckConfig, or a methodConfig / retryThrottling that gRPC would
// refuse (a method named without a service, a name given twice, a bad
// duration, a retryPolicy breaking gRFC A6's rules, a wrong type).
LBKIT_EXPORT grpc::Status ParseServiceConfig(const std::string& json, ServiceConfig* config);

// Picks and parses a policy from a loadBalancingConfig list (a JSON array),
// as ParseServiceConfig does. For parents that take a child policy list.
LBKIT_EXPORT grpc::Status ParseLoadBalancingConfig(const nlohmann::json& list,
                                                   ServiceConfig* config);

}  // namespace lbkit

#endif  // LBKIT_SERVICE_CONFIG_H_
