// gRPC's service config JSON, the part lbkit uses: loadBalancingConfig (and
// the older loadBalancingPolicy string).
//
// Thread-safety: pure functions; thread-safe.
#ifndef LBKIT_SERVICE_CONFIG_H_
#define LBKIT_SERVICE_CONFIG_H_

#include <memory>
#include <string>

#include <grpcpp/support/status.h>
#include <nlohmann/json.hpp>

#include "lbkit/balancer.h"

namespace lbkit {

struct ServiceConfig {
  std::string policy_name;                       // the chosen policy
  std::shared_ptr<const BalancerConfig> config;  // its parsed config, never null
  // "healthCheckConfig": {"serviceName": "..."} turns on client-side health
  // checking (gRFC A17) for every subchannel of the channel.
  bool health_check = false;
  std::string health_check_service;
};

// Parses `json` (empty: no config, which means pick_first). loadBalancingConfig
// is a list of one-key objects; the first whose policy is registered wins and
// unknown names are skipped. Returns INVALID_ARGUMENT naming the problem for
// invalid JSON, a malformed list, a list with no registered policy, a config
// the chosen policy rejects, or a malformed healthCheckConfig.
grpc::Status ParseServiceConfig(const std::string& json, ServiceConfig* config);

// Picks and parses a policy from a loadBalancingConfig list (a JSON array),
// as ParseServiceConfig does. For parents that take a child policy list.
grpc::Status ParseLoadBalancingConfig(const nlohmann::json& list, ServiceConfig* config);

}  // namespace lbkit

#endif  // LBKIT_SERVICE_CONFIG_H_
