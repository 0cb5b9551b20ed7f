#include "lbkit/endpoint_sharding.h"

#include "lbkit/registry.h"

#include <algorithm>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

namespace lbkit {

std::string EndpointKey(const Endpoint& endpoint) {
  // Each address length-prefixed, so that no two address lists share a key
  // whatever bytes the addresses hold.
  auto append = [](std::string* key, const std::string& address) {
    *key += std::to_string(address.size());
    *key += ':';
    *key += address;
  };
  std::string key;
  if (endpoint.addresses.size() == 1) {  // the usual case: no copy, no sort
    append(&key, endpoint.addresses[0]);
    return key;
  }
  std::vector<std::string> addresses = endpoint.addresses;
  std::sort(addresses.begin(), addresses.end());
  for (const std::string& address : addresses) append(&key, address);
  return key;
}

EndpointSharding::EndpointSharding(Helper* helper, ChangeCallback on_change,
                                   std::string child_policy)
    : helper_(helper), on_change_(std::move(on_change)), child_policy_(std::move(child_policy)) {}

EndpointSharding::EndpointSharding(Helper* helper, ReadyPicker ready, std::string child_policy)
    : helper_(helper), ready_(std::move(ready)), child_policy_(std::move(child_policy)) {
  if (ready_.min_ready == 0) ready_.min_ready = 1;
}

EndpointSharding::~EndpointSharding() {
  updating_ = true;  // children going away report nothing upward
  balancers_.clear();
}

grpc::Status EndpointSharding::Update(const std::vector<Endpoint>& endpoints,
                                      std::shared_ptr<const BalancerConfig> child_config) {
  // A child never sees a null config: "default" is what its builder makes of {}.
  const bool config_changed = child_config != requested_config_;
  requested_config_ = child_config;
  if (child_config == nullptr) {
    if (default_config_ == nullptr) {
      std::shared_ptr<const BalancerBuilder> builder = FindBalancer(child_policy_);
      if (builder == nullptr) {
        return grpc::Status(grpc::StatusCode::NOT_FOUND,
                            "child policy \"" + child_policy_ + "\" is not registered");
      }
      grpc::Status status = builder->ParseConfig(nlohmann::json::object(), &default_config_);
      if (!status.ok() || default_config_ == nullptr) {
        default_config_ = nullptr;
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                            "child policy \"" + child_policy_ + "\" rejects its default config {}" +
                                (status.ok() ? "" : ": " + status.error_message()));
      }
    }
    child_config = default_config_;
  }
  child_config_ = std::move(child_config);
  updating_ = true;
  endpoints_given_ = endpoints.size();
  resolver_error_ = grpc::Status::OK;

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

  // Until the new layout is installed, a new child's slot names a position in
  // it, not in children_: what a child publishes from its constructor is
  // read back from child->state() below instead.
  layout_pending_ = true;
  for (size_t e = 0; e < endpoints.size(); ++e) {
    const Endpoint& endpoint = endpoints[e];
    auto [it, inserted] = index_of.try_emplace(std::string_view(new_keys[e]), kTaken);
    if (!inserted && it->second == kTaken) continue;  // the same endpoint twice: one child
    const size_t index = balancers.size();
    if (!inserted) {
      const size_t from = it->second;
      it->second = kTaken;
      // Reordered addresses or new attributes: same child, told of the change.
      const bool changed = children_[from].endpoint != endpoint;
      children.push_back({endpoint, std::move(children_[from].state), children_[from].failing});
      balancers.push_back(std::move(balancers_[from]));
      slots.push_back(std::move(slots_[from]));
      *slots.back() = index;
      if (changed || config_changed) to_update.push_back(index);
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
      children.push_back(
          {endpoint, child->state(), child->state().state == ConnectivityState::kTransientFailure});
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
  layout_pending_ = false;
  balancers.clear();
  // The reason to name for a TRANSIENT_FAILURE: a remaining child's, never a
  // removed endpoint's.
  bool any_failing = false;
  grpc::Status remaining_error;
  for (const Child& child : children_) {
    any_failing |= child.failing;
    if (child.state.state == ConnectivityState::kTransientFailure && !child.state.status.ok())
      remaining_error = child.state.status;
  }
  if (!remaining_error.ok() || !any_failing) last_child_error_ = remaining_error;

  for (size_t index : to_update) {
    BalancerUpdate update;
    update.endpoints = {children_[index].endpoint};
    update.config = child_config_;
    grpc::Status status = balancers_[index]->UpdateResolverState(std::move(update));
    if (!status.ok()) result = status;
  }
  updating_ = false;
  Changed();
  if (result.ok() && ready_.build) result = Impossible();
  return result;
}

void EndpointSharding::OnChildState(size_t index, const BalancerState& state) {
  if (layout_pending_ || index >= children_.size()) return;
  Child& child = children_[index];
  child.state = state;
  if (state.state == ConnectivityState::kTransientFailure) {
    child.failing = true;
    if (!state.status.ok()) last_child_error_ = state.status;
  } else if (state.state == ConnectivityState::kReady) {
    child.failing = false;
  }
  if (updating_) return;
  Changed();
  if (reconnect_idle_children_ && state.state == ConnectivityState::kIdle) {
    balancers_[index]->ExitIdle();
  }
}

void EndpointSharding::Changed() {
  if (on_change_) on_change_();
  if (ready_.build) helper_->UpdateState(ReadyPickerState());
}

grpc::Status EndpointSharding::Impossible() const {
  auto unavailable = [this](const std::string& why) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, ready_.policy_name + ": " + why);
  };
  if (children_.empty() && !resolver_error_.ok()) {
    return unavailable("resolver error: " + resolver_error_.error_message());
  }
  if (endpoints_given_ == 0) return unavailable("the resolver returned no endpoints");
  if (children_.size() < ready_.min_ready) {
    std::string why = "needs at least " + std::to_string(ready_.min_ready) + " endpoints, got " +
                      std::to_string(children_.size());
    if (endpoints_given_ != children_.size()) {
      why += " distinct (" + std::to_string(endpoints_given_) +
             " given; endpoints with the same addresses are one)";
    }
    return unavailable(why);
  }
  return grpc::Status::OK;
}

BalancerState EndpointSharding::ReadyPickerState() const {
  BalancerState update;
  std::vector<const Child*> ready;
  size_t failing = 0;
  for (const Child& child : children_) {
    if (child.state.state == ConnectivityState::kReady) ready.push_back(&child);
    if (child.failing) ++failing;
  }
  if (ready.size() >= ready_.min_ready) {
    update.state = ConnectivityState::kReady;
    update.picker = ready_.build(ready);
    return update;
  }
  grpc::Status impossible = Impossible();
  if (impossible.ok() && children_.size() - failing < ready_.min_ready) {
    // Too many children failing (sticky, as gRPC's round_robin): name the
    // latest child error, or if none said why, the count alone.
    std::string why = ready_.min_ready == 1
                          ? "no ready endpoint"
                          : "fewer than " + std::to_string(ready_.min_ready) +
                                " endpoints can connect (" + std::to_string(failing) + " of " +
                                std::to_string(children_.size()) + " failing)";
    grpc::Status last = last_child_error_;
    if (last.ok()) AggregateState(&last);
    if (!last.error_message().empty()) why += "; last error: " + last.error_message();
    impossible = grpc::Status(grpc::StatusCode::UNAVAILABLE, ready_.policy_name + ": " + why);
  }
  if (!impossible.ok()) {
    update.state = ConnectivityState::kTransientFailure;
    update.status = impossible;
    update.picker = std::make_shared<FailPicker>(std::move(impossible));
    return update;
  }
  update.state = ConnectivityState::kConnecting;
  update.picker = std::make_shared<QueuePicker>();
  return update;
}

void EndpointSharding::ResolverError(const grpc::Status& status) {
  for (auto& balancer : balancers_) balancer->ResolverError(status);
  if (ready_.build && children_.empty()) {
    resolver_error_ = status.ok() ? grpc::Status(grpc::StatusCode::UNAVAILABLE, "unknown") : status;
    Changed();
  }
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
