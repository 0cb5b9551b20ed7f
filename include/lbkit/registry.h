// The registry of load-balancing policies by name. The built-in policies
// (pick_first, round_robin) are registered before any channel is created.
//
// Thread-safety: every function is thread-safe; a registration may race with
// channels being created and updated. A channel looks a policy up when a
// service config selects it (its first config, or a later one naming a
// different policy) and keeps that builder: replacing a registration does not
// change policies already built, only the ones built afterwards.
#ifndef LBKIT_REGISTRY_H_
#define LBKIT_REGISTRY_H_

#include <memory>
#include <string>
#include <vector>

#include <grpcpp/support/status.h>

#include "lbkit/balancer.h"
#include "lbkit/export.h"

namespace lbkit {

// Registers `builder` under builder->name(). Returns OK, or:
//   INVALID_ARGUMENT for a null builder, or a name that is empty or holds a
//     byte that is not printable ASCII, or whitespace (0x21-0x7e only: a
//     name is an identifier in JSON and in logs; gRPC's are like
//     "round_robin"). Names are case-sensitive; gRPC's older
//     "loadBalancingPolicy" form lowercases the name it looks up.
//   ALREADY_EXISTS naming the policy when the name is taken, built-ins
//     included, unless `on_duplicate` is OnDuplicate::kReplace:
//       lbkit::RegisterBalancer(std::make_shared<MyBuilder>(), lbkit::OnDuplicate::kReplace);
[[nodiscard]] LBKIT_EXPORT grpc::Status RegisterBalancer(
    std::shared_ptr<const BalancerBuilder> builder,
    OnDuplicate on_duplicate = OnDuplicate::kRefuse);
// The builder registered as `name`, or nullptr.
LBKIT_EXPORT std::shared_ptr<const BalancerBuilder> FindBalancer(const std::string& name);
// Every registered name, sorted.
LBKIT_EXPORT std::vector<std::string> RegisteredBalancers();

}  // namespace lbkit

#endif  // LBKIT_REGISTRY_H_
