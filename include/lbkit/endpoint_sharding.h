// EndpointSharding: one child balancer (pick_first by default) per endpoint,
// the building block of round_robin and of custom policies such as the
// example's custom_round_robin (gRPC-Go's balancer/endpointsharding).
//
// An update keeps the children of endpoints that stay (and their connections),
// builds children for new endpoints and destroys those of removed ones. An
// endpoint is identified by its set of addresses (EndpointKey); a reordering
// of its addresses or a change of its attributes is passed to its child, which
// keeps its connections.
//
// Two ways to use it:
//   - With a ChangeCallback: the parent reads children() when told and
//     publishes its own state (any policy).
//   - With a ReadyPicker: the parent only says how to build its picker from
//     its READY children; EndpointSharding publishes everything else
//     (CONNECTING, TRANSIENT_FAILURE with the reason, no endpoints, resolver
//     errors), as gRPC's round_robin does. round_robin and the example's
//     custom_round_robin are written this way.
//
// Thread-safety: serializer only, like any balancer code.
#ifndef LBKIT_ENDPOINT_SHARDING_H_
#define LBKIT_ENDPOINT_SHARDING_H_

#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "lbkit/balancer.h"
#include "lbkit/export.h"

namespace lbkit {

// The identity of an endpoint for EndpointSharding and EndpointMap: its
// addresses, in any order. Attributes are not part of it. Equal for two
// endpoints exactly when their sorted address lists are equal. Thread-safe.
LBKIT_EXPORT std::string EndpointKey(const Endpoint& endpoint);

// Per-endpoint state a policy keeps across resolver updates (least_request's
// counters, a weighted policy's weights), keyed by EndpointKey: an endpoint
// whose addresses are reordered or whose attributes change keeps its entry.
// Not thread-safe: use it on the serializer (pickers get copies).
template <typename T>
class LBKIT_EXPORT EndpointMap {
 public:
  // The entry for `endpoint`, default-constructed if there was none.
  T& operator[](const Endpoint& endpoint) { return entries_[EndpointKey(endpoint)]; }
  // The entry for `endpoint`, or null. Valid until the map changes.
  T* Find(const Endpoint& endpoint) {
    auto it = entries_.find(EndpointKey(endpoint));
    return it == entries_.end() ? nullptr : &it->second;
  }
  const T* Find(const Endpoint& endpoint) const {
    auto it = entries_.find(EndpointKey(endpoint));
    return it == entries_.end() ? nullptr : &it->second;
  }
  // Removes the entry for `endpoint`; returns whether there was one.
  bool Erase(const Endpoint& endpoint) { return entries_.erase(EndpointKey(endpoint)) > 0; }
  // Removes the entries of endpoints not in `endpoints`: call it with an
  // update's endpoints so that state of removed endpoints goes with them.
  void RetainOnly(const std::vector<Endpoint>& endpoints) {
    std::unordered_map<std::string, T> kept;
    for (const Endpoint& endpoint : endpoints) {
      auto it = entries_.find(EndpointKey(endpoint));
      if (it != entries_.end()) kept.emplace(it->first, std::move(it->second));
    }
    entries_.swap(kept);
  }
  size_t size() const { return entries_.size(); }
  bool empty() const { return entries_.empty(); }
  void clear() { entries_.clear(); }

 private:
  std::unordered_map<std::string, T> entries_;
};

class LBKIT_EXPORT EndpointSharding {
 public:
  // One child, as the parent sees it.
  struct Child {
    Endpoint endpoint;    // as in the last update, attributes included
    BalancerState state;  // its last published state
    // True from the child's TRANSIENT_FAILURE until its next READY: a child
    // that is reconnecting after a failure still counts as failing (gRPC's
    // sticky TRANSIENT_FAILURE).
    bool failing = false;
  };

  // Called after children changed state: once at the end of an Update, and
  // once per later state change. Read children() from it.
  using ChangeCallback = std::function<void()>;

  // What a parent policy over EndpointSharding decides, when it leaves
  // publishing to EndpointSharding.
  struct ReadyPicker {
    // The parent policy's name: every error it publishes starts "<name>: ".
    std::string policy_name;
    // How many READY children the parent needs to be READY; at least 1.
    size_t min_ready = 1;
    // Builds the parent's picker from its READY children, in children()
    // order. Called on the serializer, only with at least `min_ready`
    // children, each READY with a non-null picker; must return non-null.
    // It may keep the Child's picker and endpoint (copies), not the pointers.
    std::function<std::shared_ptr<Picker>(const std::vector<const Child*>& ready)> build;
  };

  // `helper` is the parent's helper and must outlive this object.
  // `child_policy` is the registered name of the per-endpoint policy.
  // The parent publishes: `on_change` tells it when to look.
  EndpointSharding(Helper* helper, ChangeCallback on_change,
                   std::string child_policy = "pick_first");
  // EndpointSharding publishes for the parent, through `helper`, at the end of
  // every Update, after every child state change and after a ResolverError
  // while it has no children:
  //   - READY with ready.build(READY children) when at least min_ready
  //     children are READY;
  //   - otherwise TRANSIENT_FAILURE with a FailPicker and UNAVAILABLE
  //     "<name>: <why>" when the parent cannot be READY: a resolver error
  //     with no children; the last update had no endpoints; fewer than
  //     min_ready distinct endpoints (equal address sets are one); or fewer
  //     than min_ready children not failing (Child::failing, so that
  //     TRANSIENT_FAILURE is sticky until enough children are READY again),
  //     naming the last child error;
  //   - otherwise CONNECTING with a QueuePicker (calls wait).
  // Requires ready.build non-null and ready.min_ready >= 1.
  EndpointSharding(Helper* helper, ReadyPicker ready, std::string child_policy = "pick_first");
  ~EndpointSharding();
  EndpointSharding(const EndpointSharding&) = delete;
  EndpointSharding& operator=(const EndpointSharding&) = delete;

  // Applies a new endpoint list. `child_config` goes to every child; null
  // means the child policy's default, the config its builder parses from
  // `{}` (a child never sees a null config). Returns non-OK if a child
  // rejected it, the child policy is not registered or rejects `{}`; with a
  // ReadyPicker also UNAVAILABLE, with the reason it publishes, when there
  // are no endpoints or fewer than min_ready distinct ones (the children of
  // those there are are still built).
  grpc::Status Update(const std::vector<Endpoint>& endpoints,
                      std::shared_ptr<const BalancerConfig> child_config = nullptr);
  // Forwards a resolver error to every child. With a ReadyPicker and no
  // children, publishes TRANSIENT_FAILURE naming it (until the next Update).
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
  void Changed();
  // With a ReadyPicker: why the parent cannot be READY whatever its children
  // do next (no endpoints, too few of them, a resolver error), or OK.
  grpc::Status Impossible() const;
  BalancerState ReadyPickerState() const;

  Helper* helper_;
  ChangeCallback on_change_;
  ReadyPicker ready_;  // ready_.build null: the parent publishes
  std::string child_policy_;
  bool reconnect_idle_children_ = true;
  bool updating_ = false;
  bool layout_pending_ = false;                             // Update is building the next layout
  std::shared_ptr<const BalancerConfig> requested_config_;  // as given to Update
  std::shared_ptr<const BalancerConfig> child_config_;      // what children get
  std::shared_ptr<const BalancerConfig> default_config_;    // parsed from {} once
  // With a ReadyPicker: what the last Update and ResolverError said.
  size_t endpoints_given_ = 0;
  grpc::Status resolver_error_;
  grpc::Status last_child_error_;  // the latest TRANSIENT_FAILURE a child reported
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
