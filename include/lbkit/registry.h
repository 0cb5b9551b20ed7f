// The registry of load-balancing policies by name. The built-in policies
// (pick_first, round_robin) are registered before any channel is created.
//
// Thread-safety: every function is thread-safe.
#ifndef LBKIT_REGISTRY_H_
#define LBKIT_REGISTRY_H_

#include <memory>
#include <string>
#include <vector>

#include "lbkit/balancer.h"

namespace lbkit {

// Registers `builder` under builder->name(), replacing an earlier one of that
// name. Channels created afterwards can select it.
void RegisterBalancer(std::shared_ptr<const BalancerBuilder> builder);
// The builder registered as `name`, or nullptr.
std::shared_ptr<const BalancerBuilder> FindBalancer(const std::string& name);
// Every registered name, sorted.
std::vector<std::string> RegisteredBalancers();

}  // namespace lbkit

#endif  // LBKIT_REGISTRY_H_
