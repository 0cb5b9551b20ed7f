// ChildBalancer: a balancer built from the registry, with a helper of its own
// that forwards to its parent and remembers what the child created, so that
// destroying the child releases its subchannels and silences its callbacks.
//
// It is also where a policy's exceptions stop. Every call into policy code on
// the control plane (Build, the Balancer methods, subchannel state listeners,
// timers, Helper::Post callbacks) passes through here, so a policy that
// throws is caught at its own ChildBalancer: the policy is torn down, the
// child reports TRANSIENT_FAILURE with a FailPicker whose UNAVAILABLE status
// names the policy and what it threw, the fact is logged, and the next
// resolver update builds the policy afresh.
#include <exception>
#include <utility>
#include <vector>

#include "core/exception_text.h"
#include "core/trace.h"
#include "lbkit/balancer.h"
#include "lbkit/registry.h"

namespace lbkit {
namespace {

class ChildHelper final : public Helper {
 public:
  // Runs policy code `fn` on behalf of `where` ("a timer callback"),
  // catching what it throws: ChildBalancerImpl::CallPolicy.
  using Runner = std::function<void(const char* where, const std::function<void()>& fn)>;

  ChildHelper(Helper* parent, std::function<void(BalancerState)> on_state, Runner run)
      : parent_(parent),
        on_state_(std::move(on_state)),
        run_(std::move(run)),
        alive_(std::make_shared<bool>(true)) {}

  std::shared_ptr<Subchannel> CreateSubchannel(const std::string& address,
                                               SubchannelStateListener listener) override {
    std::shared_ptr<Subchannel> subchannel = parent_->CreateSubchannel(
        address, [alive = alive_, run = run_, listener = std::move(listener)](
                     ConnectivityState state, const grpc::Status& status) {
          if (!*alive || !listener) return;
          run("a subchannel state listener", [&] { listener(state, status); });
        });
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
    return parent_->StartTimer(delay, Guarded(std::move(fn), "a timer callback"));
  }

  void Post(std::function<void()> fn) override {
    parent_->Post(Guarded(std::move(fn), "a Helper::Post callback"));
  }

  const std::string& target() const override { return parent_->target(); }
  std::chrono::steady_clock::time_point Now() const override { return parent_->Now(); }

  // Serializer only: no more callbacks from here on.
  void Disable() { *alive_ = false; }

  void ShutdownSubchannels() {
    for (auto& weak : subchannels_) {
      if (std::shared_ptr<Subchannel> subchannel = weak.lock()) subchannel->Shutdown();
    }
    subchannels_.clear();
  }

 private:
  // `fn`, run only while this helper is enabled, through run_.
  std::function<void()> Guarded(std::function<void()> fn, const char* where) const {
    return [alive = alive_, run = run_, fn = std::move(fn), where] {
      if (*alive && fn) run(where, fn);
    };
  }

  Helper* parent_;
  std::function<void(BalancerState)> on_state_;
  Runner run_;
  // Read and written only on the serializer; shared with posted callbacks.
  std::shared_ptr<bool> alive_;
  std::vector<std::weak_ptr<Subchannel>> subchannels_;
  size_t live_hint_ = 0;
};

class ChildBalancerImpl final : public ChildBalancer {
 public:
  ChildBalancerImpl(Helper* parent, std::string name, StateCallback on_state)
      : parent_(parent), name_(std::move(name)), on_state_(std::move(on_state)) {
    state_.picker = std::make_shared<QueuePicker>();
  }

  ~ChildBalancerImpl() override { TearDown(); }

  // Builds the policy. False when its builder threw or built nothing: the
  // child is then in TRANSIENT_FAILURE (state() says why), without having
  // told its parent, who has not got it yet; its next UpdateResolverState
  // reports that state and tries again on the update after.
  bool Build(std::shared_ptr<const BalancerBuilder> builder) {
    builder_ = std::move(builder);
    if (TryBuild(/*publish=*/false)) return true;
    retry_build_ = false;
    return false;
  }

  grpc::Status UpdateResolverState(BalancerUpdate update) override {
    if (depth_ == 0) doomed_.clear();  // no call into them is on the stack
    if (balancer_ == nullptr) {
      if (!retry_build_) {
        retry_build_ = true;
        if (on_state_) on_state_(state_);
        return failure_;
      }
      if (!TryBuild(/*publish=*/true)) return failure_;
    }
    grpc::Status status;
    CallPolicy("UpdateResolverState",
               [&] { status = balancer_->UpdateResolverState(std::move(update)); });
    return failure_.ok() ? status : failure_;
  }
  // A broken policy (balancer_ null) stays in TRANSIENT_FAILURE with the
  // reason it broke until the next resolver update rebuilds it.
  void ResolverError(const grpc::Status& status) override {
    if (balancer_ != nullptr)
      CallPolicy("ResolverError", [&] { balancer_->ResolverError(status); });
  }
  void ExitIdle() override {
    if (balancer_ != nullptr) CallPolicy("ExitIdle", [&] { balancer_->ExitIdle(); });
  }
  void ResetBackoff() override {
    if (balancer_ != nullptr) CallPolicy("ResetBackoff", [&] { balancer_->ResetBackoff(); });
  }
  const BalancerState& state() const override { return state_; }
  const grpc::Status& failure() const { return failure_; }

 private:
  // Runs policy code: every call into the policy comes through here (or
  // TryBuild), so what it throws stops here.
  template <typename Fn>
  void CallPolicy(const char* where, Fn&& fn) {
    struct Depth {
      int& depth;
      ~Depth() { --depth; }
    } depth{++depth_};
    try {
      fn();
    } catch (...) {
      Fail("policy \"" + name_ + "\" threw: " + internal::CurrentExceptionText() + " (in " + where +
               ")",
           /*publish=*/true);
    }
    if (depth_ == 1) RethrowParents();
  }

  // What the parent's state callback threw while this policy was publishing
  // goes on to the parent, once this policy's own code has unwound: the
  // parent's guard (its helper wraps everything that calls into this child)
  // blames the parent, not this child.
  void RethrowParents() {
    if (parent_threw_ == nullptr) return;
    std::exception_ptr parents = std::move(parent_threw_);
    parent_threw_ = nullptr;
    std::rethrow_exception(parents);
  }

  // A fresh helper and a fresh balancer from the builder. On failure the
  // child is in TRANSIENT_FAILURE, published to the parent if `publish`.
  bool TryBuild(bool publish) {
    helper_ = std::make_unique<ChildHelper>(
        parent_, [this](BalancerState state) { OnState(std::move(state)); },
        [this](const char* where, const std::function<void()>& fn) { CallPolicy(where, fn); });
    std::unique_ptr<Balancer> built;
    ++depth_;  // a constructor that publishes: the parent's throw waits, as in CallPolicy
    try {
      built = builder_->Build(helper_.get());
    } catch (...) {
      --depth_;
      parent_threw_ = nullptr;  // this policy failed first; the parent hears of that instead
      Fail("policy \"" + name_ + "\" threw: " + internal::CurrentExceptionText() + " (in Build)",
           publish);
      return false;
    }
    --depth_;
    if (depth_ == 0 && parent_threw_ != nullptr) {
      balancer_ = std::move(built);
      failure_ = grpc::Status::OK;
      RethrowParents();
    }
    if (built == nullptr) {
      Fail("policy \"" + name_ + "\" built nothing", publish);
      return false;
    }
    balancer_ = std::move(built);
    failure_ = grpc::Status::OK;
    return true;
  }

  // The policy is not to be trusted any more: it is silenced at once (no
  // state, listener, timer or post of it reaches anyone) and its subchannels
  // released; the object itself is destroyed at the next resolver update or
  // with this child, when no call into it can be on the stack (calls nest: a
  // policy publishes, its parent asks this child to ExitIdle, that throws).
  // The child reports TRANSIENT_FAILURE.
  void Fail(const std::string& message, bool publish) {
    internal::LogLine(parent_->target() + ": " + message +
                      "; the policy is in TRANSIENT_FAILURE until the next resolver update");
    Doomed doomed{std::move(helper_), std::move(balancer_)};
    if (doomed.helper != nullptr) {
      doomed.helper->Disable();
      doomed.helper->ShutdownSubchannels();
    }
    doomed_.push_back(std::move(doomed));
    failure_ = grpc::Status(grpc::StatusCode::UNAVAILABLE, message);
    BalancerState failed;
    failed.state = ConnectivityState::kTransientFailure;
    failed.picker = std::make_shared<FailPicker>(failure_);
    failed.status = failure_;
    state_ = std::move(failed);
    if (!publish || !on_state_) return;
    try {
      on_state_(state_);
    } catch (...) {
      // The parent's own callback, called from inside this catch: it must
      // not escape to the serializer.
      internal::LogLine(parent_->target() + ": the parent of policy \"" + name_ +
                        "\" threw from its state callback: " + internal::CurrentExceptionText());
    }
  }

  // Silences the helper first, so that nothing the policy does while it is
  // destroyed reaches the parent.
  void TearDown() {
    if (helper_ != nullptr) helper_->Disable();
    balancer_.reset();
    if (helper_ != nullptr) helper_->ShutdownSubchannels();
  }

  void OnState(BalancerState state) {
    if (state.picker == nullptr) {
      state.picker = std::make_shared<FailPicker>(
          grpc::Status(grpc::StatusCode::INTERNAL, "policy " + name_ + " published no picker"));
    }
    internal::Trace(internal::TraceFlag::kPolicy, name_, ": ", ToString(state.state),
                    state.status.ok() ? "" : " (" + state.status.error_message() + ")");
    state_ = std::move(state);
    if (!on_state_) return;
    if (depth_ == 0) {
      on_state_(state_);  // not inside this policy's code: the parent's guard sees it directly
      return;
    }
    try {
      on_state_(state_);
    } catch (...) {
      if (parent_threw_ == nullptr) parent_threw_ = std::current_exception();
    }
  }

  Helper* const parent_;
  const std::string name_;
  StateCallback on_state_;
  std::shared_ptr<const BalancerBuilder> builder_;
  // Replaced on each build: callbacks the previous policy left behind see
  // their helper disabled and do nothing.
  std::unique_ptr<ChildHelper> helper_;
  std::unique_ptr<Balancer> balancer_;  // null while broken
  BalancerState state_;
  grpc::Status failure_;             // why the policy is broken; OK while it works
  std::exception_ptr parent_threw_;  // see RethrowParents
  bool retry_build_ = true;          // false between a failed Build in Create and the next update
  // Policies that threw, inert, waiting to be destroyed; the helper goes
  // after its balancer (members are destroyed in reverse order).
  struct Doomed {
    std::unique_ptr<ChildHelper> helper;
    std::unique_ptr<Balancer> balancer;
  };
  int depth_ = 0;  // calls into the policy on the stack
  std::vector<Doomed> doomed_;
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
  const bool built = child->Build(std::move(builder));
  if (status != nullptr) *status = built ? grpc::Status::OK : child->failure();
  return child;
}

}  // namespace lbkit
