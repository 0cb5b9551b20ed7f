// EndpointSharding: one child balancer (pick_first by default) per endpoint,
// the building block of round_robin and of custom policies such as the
// example's custom_round_robin (gRPC-Go's balancer/endpointsharding).
//
// An update keeps the children of endpoints that stay (and their connections),
// builds children for new endpoints and destroys those of removed ones. An
// endpoint is identified by its set of addresses; a reordering is passed to
// its child.
//
// Thread-safety: serializer only, like any balancer code.
#ifndef LBKIT_ENDPOINT_SHARDING_H_
#define LBKIT_ENDPOINT_SHARDING_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "lbkit/balancer.h"

namespace lbkit {

class EndpointSharding {
 public:
  // One child, as the parent sees it.
  struct Child {
    Endpoint endpoint;
    BalancerState state;  // its last published state
  };

  // Called after children changed state: once at the end of an Update, and
  // once per later state change. Read children() from it.
  using ChangeCallback = std::function<void()>;

  // `helper` is the parent's helper and must outlive this object.
  // `child_policy` is the registered name of the per-endpoint policy.
  EndpointSharding(Helper* helper, ChangeCallback on_change,
                   std::string child_policy = "pick_first");
  ~EndpointSharding();
  EndpointSharding(const EndpointSharding&) = delete;
  EndpointSharding& operator=(const EndpointSharding&) = delete;

  // Applies a new endpoint list (`child_config` goes to every child; null means
  // the child policy's default). Returns non-OK if a child rejected it or the
  // child policy is not registered.
  grpc::Status Update(const std::vector<Endpoint>& endpoints,
                      std::shared_ptr<const BalancerConfig> child_config = nullptr);
  // Forwards a resolver error to every child.
  void ResolverError(const grpc::Status& status);
  // Asks every IDLE child to connect.
  void ExitIdle();
  void ResetBackoff();

  // The children, in the order of the last update's endpoints.
  const std::vector<Child>& children() const { return children_; }

  // The state gRPC aggregates from children: READY if any is READY, else
  // CONNECTING if any is CONNECTING, else IDLE if any is IDLE, else
  // TRANSIENT_FAILURE (with the last child error) — also for no children.
  // `error`, if not null, receives the status of the last child that failed.
  ConnectivityState AggregateState(grpc::Status* error = nullptr) const;

  // Children (pick_first) that fall back to IDLE are asked to reconnect at
  // once, as gRPC's round_robin does. Set false to leave them idle.
  void set_reconnect_idle_children(bool value) { reconnect_idle_children_ = value; }

 private:
  void OnChildState(size_t index, const BalancerState& state);

  Helper* helper_;
  ChangeCallback on_change_;
  std::string child_policy_;
  bool reconnect_idle_children_ = true;
  bool updating_ = false;
  std::shared_ptr<const BalancerConfig> child_config_;
  // children_[i] is driven by balancers_[i]; keys_[i] identifies its endpoint.
  std::vector<Child> children_;
  std::vector<std::unique_ptr<ChildBalancer>> balancers_;
  std::vector<std::string> keys_;
  // Each child's callback finds its slot through a stable index cell, renumbered
  // on every update.
  std::vector<std::shared_ptr<size_t>> slots_;
};

}  // namespace lbkit

#endif  // LBKIT_ENDPOINT_SHARDING_H_
