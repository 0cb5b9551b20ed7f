#include "lbkit/endpoint_sharding.h"

#include <algorithm>
#include <string_view>
#include <unordered_map>
#include <utility>

namespace lbkit {
namespace {

// An endpoint is identified by its set of addresses.
std::string EndpointKey(const Endpoint& endpoint) {
  if (endpoint.addresses.size() == 1) return endpoint.addresses[0] + '\n';  // no copy, no sort
  std::vector<std::string> addresses = endpoint.addresses;
  std::sort(addresses.begin(), addresses.end());
  std::string key;
  for (const std::string& address : addresses) key += address + '\n';
  return key;
}

}  // namespace

EndpointSharding::EndpointSharding(Helper* helper, ChangeCallback on_change,
                                   std::string child_policy)
    : helper_(helper), on_change_(std::move(on_change)), child_policy_(std::move(child_policy)) {}

EndpointSharding::~EndpointSharding() {
  updating_ = true;  // children going away report nothing upward
  balancers_.clear();
}

grpc::Status EndpointSharding::Update(const std::vector<Endpoint>& endpoints,
                                      std::shared_ptr<const BalancerConfig> child_config) {
  updating_ = true;
  const bool config_changed = child_config != child_config_;
  child_config_ = child_config;

  // Every key first, in storage that stays put while `index` views it.
  std::vector<std::string> new_keys;
  new_keys.reserve(endpoints.size());
  for (const Endpoint& endpoint : endpoints) new_keys.push_back(EndpointKey(endpoint));
  // One map answers both questions: which old child has this key, and did
  // this update list it already (kTaken).
  constexpr size_t kTaken = static_cast<size_t>(-1);
  std::unordered_map<std::string_view, size_t> index_of;
  index_of.reserve(keys_.size() + endpoints.size());
  for (size_t i = 0; i < keys_.size(); ++i) index_of.emplace(keys_[i], i);
  std::vector<size_t> kept;  // positions in `endpoints` that got a child
  kept.reserve(endpoints.size());

  std::vector<Child> children;
  std::vector<std::unique_ptr<ChildBalancer>> balancers;
  std::vector<std::string> keys;
  std::vector<std::shared_ptr<size_t>> slots;
  std::vector<size_t> to_update;  // children that must hear about this update
  children.reserve(endpoints.size());
  balancers.reserve(endpoints.size());
  keys.reserve(endpoints.size());
  slots.reserve(endpoints.size());
  grpc::Status result;

  for (size_t e = 0; e < endpoints.size(); ++e) {
    const Endpoint& endpoint = endpoints[e];
    auto [it, inserted] = index_of.try_emplace(std::string_view(new_keys[e]), kTaken);
    if (!inserted && it->second == kTaken) continue;  // the same endpoint twice: one child
    const size_t index = balancers.size();
    if (!inserted) {
      const size_t from = it->second;
      it->second = kTaken;
      const bool reordered = children_[from].endpoint != endpoint;
      children.push_back({endpoint, std::move(children_[from].state)});
      balancers.push_back(std::move(balancers_[from]));
      slots.push_back(std::move(slots_[from]));
      *slots.back() = index;
      if (reordered || config_changed) to_update.push_back(index);
    } else {
      auto slot = std::make_shared<size_t>(index);
      grpc::Status status;
      std::unique_ptr<ChildBalancer> child = ChildBalancer::Create(
          helper_, child_policy_,
          [this, slot](const BalancerState& state) { OnChildState(*slot, state); }, &status);
      if (child == nullptr) {
        result = status;
        continue;
      }
      children.push_back({endpoint, child->state()});
      balancers.push_back(std::move(child));
      slots.push_back(std::move(slot));
      to_update.push_back(index);
    }
    kept.push_back(e);
  }
  index_of.clear();  // views into new_keys and keys_: gone before they move
  for (size_t e : kept) keys.push_back(std::move(new_keys[e]));

  // Install the new layout first, so children report into the right slots;
  // children left behind in the old vectors are destroyed with them.
  children_.swap(children);
  balancers_.swap(balancers);
  keys_.swap(keys);
  slots_.swap(slots);
  balancers.clear();

  for (size_t index : to_update) {
    BalancerUpdate update;
    update.endpoints = {children_[index].endpoint};
    update.config = child_config_;
    grpc::Status status = balancers_[index]->UpdateResolverState(std::move(update));
    if (!status.ok()) result = status;
  }
  updating_ = false;
  if (on_change_) on_change_();
  return result;
}

void EndpointSharding::OnChildState(size_t index, const BalancerState& state) {
  children_[index].state = state;
  if (updating_) return;
  if (on_change_) on_change_();
  if (reconnect_idle_children_ && state.state == ConnectivityState::kIdle) {
    balancers_[index]->ExitIdle();
  }
}

void EndpointSharding::ResolverError(const grpc::Status& status) {
  for (auto& balancer : balancers_) balancer->ResolverError(status);
}

void EndpointSharding::ExitIdle() {
  for (size_t i = 0; i < balancers_.size(); ++i) {
    if (children_[i].state.state == ConnectivityState::kIdle) balancers_[i]->ExitIdle();
  }
}

void EndpointSharding::ResetBackoff() {
  for (auto& balancer : balancers_) balancer->ResetBackoff();
}

ConnectivityState EndpointSharding::AggregateState(grpc::Status* error) const {
  bool connecting = false;
  bool idle = false;
  for (const Child& child : children_) {
    switch (child.state.state) {
      case ConnectivityState::kReady:
        return ConnectivityState::kReady;
      case ConnectivityState::kConnecting:
        connecting = true;
        break;
      case ConnectivityState::kIdle:
        idle = true;
        break;
      case ConnectivityState::kTransientFailure:
        if (error != nullptr) *error = child.state.status;
        break;
      case ConnectivityState::kShutdown:
        break;
    }
  }
  if (connecting) return ConnectivityState::kConnecting;
  if (idle) return ConnectivityState::kIdle;
  return ConnectivityState::kTransientFailure;
}

}  // namespace lbkit
