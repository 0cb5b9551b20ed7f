// ChildBalancer: a balancer built from the registry, with a helper of its own
// that forwards to its parent and remembers what the child created, so that
// destroying the child releases its subchannels and silences its callbacks.
#include <utility>
#include <vector>

#include "core/trace.h"
#include "lbkit/balancer.h"
#include "lbkit/registry.h"

namespace lbkit {
namespace {

class ChildHelper final : public Helper {
 public:
  ChildHelper(Helper* parent, std::function<void(BalancerState)> on_state)
      : parent_(parent), on_state_(std::move(on_state)), alive_(std::make_shared<bool>(true)) {}

  std::shared_ptr<Subchannel> CreateSubchannel(const std::string& address,
                                               SubchannelStateListener listener) override {
    std::shared_ptr<Subchannel> subchannel =
        parent_->CreateSubchannel(address, std::move(listener));
    // Forget released subchannels now and then so the list stays small.
    if (subchannels_.size() >= 2 * live_hint_ + 16) {
      std::vector<std::weak_ptr<Subchannel>> live;
      for (auto& weak : subchannels_) {
        if (!weak.expired()) live.push_back(std::move(weak));
      }
      subchannels_ = std::move(live);
      live_hint_ = subchannels_.size();
    }
    subchannels_.push_back(subchannel);
    return subchannel;
  }

  void UpdateState(BalancerState state) override {
    if (*alive_) on_state_(std::move(state));
  }

  void RequestReresolution() override {
    if (*alive_) parent_->RequestReresolution();
  }

  std::unique_ptr<Timer> StartTimer(std::chrono::milliseconds delay,
                                    std::function<void()> fn) override {
    return parent_->StartTimer(delay, [alive = alive_, fn = std::move(fn)] {
      if (*alive) fn();
    });
  }

  void Post(std::function<void()> fn) override {
    parent_->Post([alive = alive_, fn = std::move(fn)] {
      if (*alive) fn();
    });
  }

  const std::string& target() const override { return parent_->target(); }

  // Serializer only: no more callbacks from here on.
  void Disable() { *alive_ = false; }

  void ShutdownSubchannels() {
    for (auto& weak : subchannels_) {
      if (std::shared_ptr<Subchannel> subchannel = weak.lock()) subchannel->Shutdown();
    }
    subchannels_.clear();
  }

 private:
  Helper* parent_;
  std::function<void(BalancerState)> on_state_;
  // Read and written only on the serializer; shared with posted callbacks.
  std::shared_ptr<bool> alive_;
  std::vector<std::weak_ptr<Subchannel>> subchannels_;
  size_t live_hint_ = 0;
};

class ChildBalancerImpl final : public ChildBalancer {
 public:
  ChildBalancerImpl(Helper* parent, std::string name, StateCallback on_state)
      : name_(std::move(name)),
        on_state_(std::move(on_state)),
        helper_(parent, [this](BalancerState state) { OnState(std::move(state)); }) {
    state_.picker = std::make_shared<QueuePicker>();
  }

  ~ChildBalancerImpl() override {
    helper_.Disable();
    balancer_.reset();
    helper_.ShutdownSubchannels();
  }

  bool Build(const BalancerBuilder& builder) {
    balancer_ = builder.Build(&helper_);
    return balancer_ != nullptr;
  }

  grpc::Status UpdateResolverState(BalancerUpdate update) override {
    return balancer_->UpdateResolverState(std::move(update));
  }
  void ResolverError(const grpc::Status& status) override { balancer_->ResolverError(status); }
  void ExitIdle() override { balancer_->ExitIdle(); }
  void ResetBackoff() override { balancer_->ResetBackoff(); }
  const BalancerState& state() const override { return state_; }

 private:
  void OnState(BalancerState state) {
    if (state.picker == nullptr) {
      state.picker = std::make_shared<FailPicker>(
          grpc::Status(grpc::StatusCode::INTERNAL, "policy " + name_ + " published no picker"));
    }
    internal::Trace(internal::TraceFlag::kPolicy, name_, ": ", ToString(state.state),
                    state.status.ok() ? "" : " (" + state.status.error_message() + ")");
    state_ = std::move(state);
    if (on_state_) on_state_(state_);
  }

  std::string name_;
  StateCallback on_state_;
  ChildHelper helper_;
  std::unique_ptr<Balancer> balancer_;
  BalancerState state_;
};

}  // namespace

std::unique_ptr<ChildBalancer> ChildBalancer::Create(Helper* parent, const std::string& name,
                                                     StateCallback on_state, grpc::Status* status) {
  std::shared_ptr<const BalancerBuilder> builder = FindBalancer(name);
  if (builder == nullptr) {
    if (status != nullptr) {
      *status =
          grpc::Status(grpc::StatusCode::NOT_FOUND, "no policy registered as \"" + name + "\"");
    }
    return nullptr;
  }
  auto child = std::make_unique<ChildBalancerImpl>(parent, name, std::move(on_state));
  if (!child->Build(*builder)) {
    if (status != nullptr) {
      *status = grpc::Status(grpc::StatusCode::INTERNAL, "policy \"" + name + "\" built nothing");
    }
    return nullptr;
  }
  if (status != nullptr) *status = grpc::Status::OK;
  return child;
}

}  // namespace lbkit
