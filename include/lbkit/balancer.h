// The control plane of a load-balancing policy: builder, balancer, helper.
//
// A BalancerBuilder parses its config and builds a Balancer. The channel gives
// the balancer resolver updates; the balancer creates subchannels (or child
// balancers) through its Helper and publishes a connectivity state and a
// Picker through it.
//
// Thread-safety, the one rule: every Balancer method, every subchannel state
// listener, every timer and every Helper::Post callback of one channel runs on
// that channel's work serializer: one at a time, in the order queued, never
// two at once. A balancer therefore needs no lock of its own. Pickers are the
// exception: see picker.h.
//
// Which thread runs the serializer varies from one callback to the next, but
// it is always one of lbkit's own: one of the `lbkit-control` threads, a
// small fixed pool (2 to 4) shared by every channel in the process, or lbkit's
// I/O thread (`lbkit-io`), which delivers a subchannel's state change itself
// when the channel has no other control-plane work queued. Never an
// application's thread (Channel::Snapshot() and Shutdown() wait for the pool
// instead) and never gRPC's callback threads. Do not rely on the thread's
// identity: thread_local state is not per channel.
//
// Policy code must not block: no sleeping, no synchronous RPC or file or
// network I/O, no waiting on another thread, another channel or a lock held
// for long. Its threads are shared with every channel in the process, and on
// lbkit-io a blocked callback also stalls every relayed call, health watch,
// connectivity report and etcd resolver in it. Hand slow work to a thread of
// your own and bring its result back with Helper::Post.
//
// Exceptions: policy code should not throw, but lbkit stops what it throws
// (std::exception or anything else) at the policy's ChildBalancer, never
// letting it reach lbkit's threads. A throwing Build, Balancer method,
// subchannel state listener, timer or Helper::Post callback puts that policy
// into TRANSIENT_FAILURE: calls fail with UNAVAILABLE
// 'policy "<name>" threw: <what()> (in <callback>)', the line is logged, the
// policy object is silenced and its subchannels released, and the next
// resolver update builds the policy afresh. What a parent's code throws while
// a child is publishing to it (EndpointSharding's ReadyPicker::build, a
// ChangeCallback, a ChildBalancer::StateCallback) is the parent's: it fails
// the parent, not the child. A throwing Picker::Pick fails that call with
// INTERNAL naming the picker's type, wait-for-ready or not; a throwing
// done-callback is logged and otherwise ignored. ParseConfig: see
// service_config.h.
#ifndef LBKIT_BALANCER_H_
#define LBKIT_BALANCER_H_

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/support/status.h>
#include <nlohmann/json.hpp>

#include "lbkit/connectivity.h"
#include "lbkit/export.h"
#include "lbkit/picker.h"
#include "lbkit/resolver.h"

namespace lbkit {

namespace internal {
class SubchannelImpl;
struct SubchannelAccess;
}  // namespace internal
namespace testing {
class FakeSubchannel;
}

// A connection to exactly one address (a grpc::Channel underneath, so gRPC
// does HTTP/2, TLS and reconnect backoff). Created by Helper::CreateSubchannel.
// A subchannel starts IDLE and connects only when asked.
//
// Methods other than address() must be called on the work serializer.
// Destroying the last reference, or Shutdown(), closes the connection once the
// calls on it finish.
//
// A policy that must see or change what its child sees of a subchannel
// (outlier_detection makes an ejected one look TRANSIENT_FAILURE) hands the
// child a ForwardingSubchannel instead of the one its own Helper created.
class LBKIT_EXPORT Subchannel {
 public:
  virtual ~Subchannel() = default;
  Subchannel(const Subchannel&) = delete;
  Subchannel& operator=(const Subchannel&) = delete;

  // The address it was created for. Thread-safe.
  virtual const std::string& address() const = 0;
  // The last state delivered to the listener.
  virtual ConnectivityState state() const = 0;
  // Starts connecting if IDLE; otherwise does nothing.
  virtual void RequestConnection() = 0;
  // Resets the reconnect backoff so that the next attempt starts now.
  virtual void ResetBackoff() = 0;
  // Stops the listener for good and lets the connection go. Idempotent.
  virtual void Shutdown() = 0;

 private:
  friend class internal::SubchannelImpl;
  friend class testing::FakeSubchannel;
  friend class ForwardingSubchannel;
  friend struct internal::SubchannelAccess;
  // Only lbkit (and its testing kit) creates subchannels; policies wrap them.
  Subchannel() : innermost_(this) {}
  explicit Subchannel(Subchannel* innermost) : innermost_(innermost) {}

  // The subchannel lbkit created that this one is, or wraps (through any
  // number of ForwardingSubchannels): a call picked on a wrapper goes to this
  // connection, with no virtual call or cast on the way.
  Subchannel* const innermost_;
};

// A Subchannel that wraps another one, for parent policies that stand between
// their child and the subchannels the child creates: override
// Helper::CreateSubchannel in the helper you give the child (a ChildBalancer's
// parent) and return a subclass of this.
//
// Every method forwards to the wrapped subchannel; override the ones whose
// answer you change (state(), to show the child another state) and call the
// base for the rest. A call whose pick returns the wrapper goes to the wrapped
// subchannel's connection: what the wrapper says of state() does not change
// where calls go, only what the policy that holds it believes.
//
// A wrapper that overrides state() must also stand between the child and the
// state notices: pass your own listener to the parent's CreateSubchannel and
// call the child's from it (and when your state() changes on its own), so that
// what the child hears agrees with state(). Helper::CreateSubchannel's
// contract is then yours to keep: override Shutdown() too, and deliver
// nothing to the child's listener after it (outlier_detection does all this).
//
// The wrapper holds the wrapped subchannel alive for its own lifetime (so a
// picker holding the wrapper holds the connection). Thread-safety as for
// Subchannel: address() and wrapped() are thread-safe, the rest is for the
// work serializer. Destroying the wrapper releases its reference to the
// wrapped subchannel (if it held the last one, the connection closes as for
// any subchannel); Shutdown() here forwards, as everything else does.
class LBKIT_EXPORT ForwardingSubchannel : public Subchannel {
 public:
  // `wrapped` must not be null (throws std::invalid_argument if it is).
  explicit ForwardingSubchannel(std::shared_ptr<Subchannel> wrapped);
  ~ForwardingSubchannel() override;

  const std::string& address() const override { return wrapped_->address(); }
  ConnectivityState state() const override { return wrapped_->state(); }
  void RequestConnection() override { wrapped_->RequestConnection(); }
  void ResetBackoff() override { wrapped_->ResetBackoff(); }
  void Shutdown() override { wrapped_->Shutdown(); }

  // The subchannel this one forwards to. Never null; set at construction and
  // never changed, so thread-safe.
  const std::shared_ptr<Subchannel>& wrapped() const { return wrapped_; }

 private:
  const std::shared_ptr<Subchannel> wrapped_;
};

// Receives a subchannel's state, on the work serializer, each time it
// differs from the last one delivered. Promised: the latest state is always
// delivered, in order; not promised: every intermediate state (gRPC reports
// the state a connection is in when lbkit looks, so a fast IDLE -> CONNECTING
// -> READY can arrive as IDLE -> READY). TRANSIENT_FAILURE may be delivered
// twice in a row: first as soon as gRPC reports it, then again with gRPC's
// detailed reason. `status` explains TRANSIENT_FAILURE and is OK otherwise.
using SubchannelStateListener =
    std::function<void(ConnectivityState state, const grpc::Status& status)>;

// What a balancer publishes: its aggregate state and the picker for it.
struct LBKIT_EXPORT BalancerState {
  ConnectivityState state = ConnectivityState::kIdle;
  std::shared_ptr<Picker> picker;  // never null once published
  grpc::Status status;             // why, for TRANSIENT_FAILURE; OK otherwise
};

// A pending timer. Destroying it cancels the callback if it has not run.
class LBKIT_EXPORT Timer {
 public:
  virtual ~Timer() = default;
};

// A balancer's link to its channel (or to its parent balancer). Valid until the
// balancer is destroyed. Methods must be called on the work serializer, except
// Post, which is thread-safe.
class LBKIT_EXPORT Helper {
 public:
  virtual ~Helper() = default;

  // Creates an IDLE subchannel for `address`. `listener` is called on each
  // state change until the subchannel is shut down or this balancer is
  // destroyed, whichever comes first. Never returns null: a bad address shows
  // up as TRANSIENT_FAILURE.
  virtual std::shared_ptr<Subchannel> CreateSubchannel(const std::string& address,
                                                       SubchannelStateListener listener) = 0;
  // Publishes a new state and picker. `state.picker` must not be null.
  virtual void UpdateState(BalancerState state) = 0;
  // Asks the resolver to resolve again (a connection dropped).
  virtual void RequestReresolution() = 0;
  // Runs `fn` on the work serializer after `delay`, unless the returned timer
  // is destroyed first or this balancer is destroyed.
  [[nodiscard]] virtual std::unique_ptr<Timer> StartTimer(std::chrono::milliseconds delay,
                                                          std::function<void()> fn) = 0;
  // Thread-safe: runs `fn` on the work serializer soon, unless this balancer
  // has been destroyed by then. Pickers use it to wake an idle balancer.
  virtual void Post(std::function<void()> fn) = 0;
  // The channel's target, for logs.
  virtual const std::string& target() const = 0;
  // The time StartTimer measures delays against: steady_clock::now() in a
  // channel; the fake clock in the testing kit. Policies that compare times
  // (outlier_detection's ejection times) read it here so that tests can move
  // it. A helper that forwards to a parent (its StartTimer going to the
  // parent's) must forward Now() too: otherwise timers run on the parent's
  // clock while Now() reads another, and the two disagree (in the testing
  // kit, Now() would not move with AdvanceTime).
  virtual std::chrono::steady_clock::time_point Now() const {
    return std::chrono::steady_clock::now();
  }
};

// A policy's parsed config. Policies derive their own.
class LBKIT_EXPORT BalancerConfig {
 public:
  virtual ~BalancerConfig() = default;
};

// What a balancer receives from the resolver, with its parsed config.
struct LBKIT_EXPORT BalancerUpdate {
  std::vector<Endpoint> endpoints;
  std::shared_ptr<const BalancerConfig> config;  // from the policy's ParseConfig
};

class LBKIT_EXPORT Balancer {
 public:
  virtual ~Balancer() = default;
  // A new resolver state. Returns non-OK to reject it (for example too few
  // endpoints); the balancer should then also publish TRANSIENT_FAILURE.
  virtual grpc::Status UpdateResolverState(BalancerUpdate update) = 0;
  // The resolver failed. With no endpoints yet, publish TRANSIENT_FAILURE.
  virtual void ResolverError(const grpc::Status& status) = 0;
  // Leave IDLE: connect now.
  virtual void ExitIdle() {}
  // Reset reconnect backoff of every subchannel.
  virtual void ResetBackoff() {}
};

// Builds one policy. Registered by name (registry.h). Thread-safe: const
// methods may be called from any thread.
class LBKIT_EXPORT BalancerBuilder {
 public:
  virtual ~BalancerBuilder() = default;
  // The name used in loadBalancingConfig, e.g. "round_robin".
  virtual std::string name() const = 0;
  // Parses and validates the policy's JSON object (`{}` when empty). On
  // success sets *config (never null) and returns OK; otherwise returns
  // INVALID_ARGUMENT with a message naming the bad field. Must not throw.
  virtual grpc::Status ParseConfig(const nlohmann::json& json,
                                   std::shared_ptr<const BalancerConfig>* config) const = 0;
  // Builds a balancer that reports through `helper` (valid for its lifetime).
  virtual std::unique_ptr<Balancer> Build(Helper* helper) const = 0;
};

// Owns a child balancer built from the registry: what a parent policy uses to
// delegate (EndpointSharding uses it for one pick_first per endpoint). The
// child gets its own helper: its subchannels and timers are released, and its
// listeners silenced, when the ChildBalancer is destroyed. Serializer only.
class LBKIT_EXPORT ChildBalancer {
 public:
  // Called on the serializer each time the child publishes a state.
  using StateCallback = std::function<void(const BalancerState& state)>;

  // Builds the policy `name` under `parent`. Returns nullptr and sets *status
  // (NOT_FOUND) when no such policy is registered. When the builder throws
  // or builds nothing, returns a child in TRANSIENT_FAILURE (state() says
  // why, not yet reported to `on_state`) and sets *status to that error; its
  // next UpdateResolverState reports it, and the one after builds again.
  static std::unique_ptr<ChildBalancer> Create(Helper* parent, const std::string& name,
                                               StateCallback on_state, grpc::Status* status);
  virtual ~ChildBalancer() = default;

  virtual grpc::Status UpdateResolverState(BalancerUpdate update) = 0;
  virtual void ResolverError(const grpc::Status& status) = 0;
  virtual void ExitIdle() = 0;
  virtual void ResetBackoff() = 0;
  // The last state the child published (IDLE with a queueing picker before).
  virtual const BalancerState& state() const = 0;
};

}  // namespace lbkit

#endif  // LBKIT_BALANCER_H_
