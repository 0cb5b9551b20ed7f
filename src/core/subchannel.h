// SubchannelImpl: lbkit's Subchannel, a grpc::Channel to exactly one address
// (design.md, rule 3).
#ifndef LBKIT_SRC_CORE_SUBCHANNEL_H_
#define LBKIT_SRC_CORE_SUBCHANNEL_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <grpcpp/channel.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>
#include <grpcpp/support/client_interceptor.h>

#include "core/stub_adapter/stub_adapter.h"
#include "core/work_serializer.h"
#include "lbkit/balancer.h"

namespace lbkit {
namespace internal {

class HealthWatch;

// What lbkit's call path reads of a Subchannel: the connection a pick on it
// (or on a ForwardingSubchannel around it) goes to.
struct SubchannelAccess {
  static Subchannel* Innermost(const Subchannel& subchannel) { return subchannel.innermost_; }
};

// The gRPC target for one lbkit address: "ipv4:1.2.3.4:80" for IPv4 literals,
// "ipv6:[::1]:80" for IPv6 ones, "unix:..." as is, "dns:///host:port" for
// names (gRPC resolves them; "localhost" gives both loopback families).
std::string AddressToGrpcTarget(const std::string& address);

// A method registered on lbkit's channel; its index selects a per-subchannel
// cache slot (RegisteredMethods).
struct MethodInfo {
  std::string name;
  size_t index;
};

// The pick's done-callback for the call being created on this thread, for
// the subchannels' interceptor factory (stub_adapter.h, item 13).
inline thread_local CallDoneCallback* pending_call_done = nullptr;

// Sets pending_call_done for the call created in its scope, and puts back
// the one before: an application's interceptor factory
// (ChannelOptions::interceptor_factories) runs inside that creation and may
// itself start a call on an lbkit channel, on the same thread.
class PendingCallDone {
 public:
  explicit PendingCallDone(CallDoneCallback* done) : outer_(pending_call_done) {
    pending_call_done = done;
  }
  ~PendingCallDone() { pending_call_done = outer_; }
  PendingCallDone(const PendingCallDone&) = delete;
  PendingCallDone& operator=(const PendingCallDone&) = delete;

 private:
  CallDoneCallback* const outer_;
};

class SubchannelImpl final : public Subchannel,
                             public std::enable_shared_from_this<SubchannelImpl> {
 public:
  // Creates an IDLE subchannel and starts following its state; `listener`
  // runs on `serializer`. `interceptors` (ChannelOptions::interceptor_factories)
  // run on its calls before lbkit's own interceptor.
  static std::shared_ptr<SubchannelImpl> Create(
      std::string address, const std::shared_ptr<grpc::ChannelCredentials>& credentials,
      const grpc::ChannelArguments& args, std::shared_ptr<WorkSerializer> serializer,
      SubchannelStateListener listener,
      const std::vector<std::shared_ptr<grpc::experimental::ClientInterceptorFactoryInterface>>&
          interceptors = {});
  // For unit tests of policies: no grpc::Channel; state changes only through
  // SetStateForTesting, connection requests only counted.
  static std::shared_ptr<SubchannelImpl> CreateForTesting(std::string address,
                                                          SubchannelStateListener listener);
  ~SubchannelImpl() override;

  const std::string& address() const override { return address_; }
  ConnectivityState state() const override { return state_; }
  void RequestConnection() override;
  void ResetBackoff() override;
  void Shutdown() override;

  // Any thread: starts a call on this subchannel's connection. `create`
  // makes it: `create(channel, methods)` with the connection's grpc::Channel
  // and the methods registered on it (the stub adapter does this, in
  // stub_adapter/channel_facade.cc). `on_done`, if set, receives the call's
  // end (status and trailers) when gRPC hands the status to interceptors
  // (picker.h, CallDoneCallback); the call's interceptor moves it out. A
  // template taking references, so that the call path makes no extra hop and
  // no extra move.
  template <typename Create>
  auto StartCall(CallDoneCallback&& on_done, Create&& create) {
    calls_started_.fetch_add(1, std::memory_order_relaxed);
    PendingCallDone pending(on_done ? &on_done : nullptr);
    return create(channel_, methods_);
  }

  // Any thread: starts a generic (ByteBuffer) bidi call to `method` on this
  // connection, with completions on `cq`, for lbkit's call relay. `on_done`,
  // if set, receives the call's end, as for CreateCall.
  std::unique_ptr<grpc::GenericClientAsyncReaderWriter> StartGenericCall(
      grpc::ClientContext* context, const std::string& method, grpc::CompletionQueue* cq,
      CallDoneCallback on_done);

  // Any thread: whether gRPC last reported this connection READY. Set on the
  // IoLoop thread the moment gRPC reports a change, before the policy hears
  // of it, so that a picker published before the change cannot place a call
  // on a connection lbkit already knows is gone.
  // The connection's own state is read too: it changes a watcher hop before
  // connected_, and a call let through in that hop would be stranded on the
  // dead connection (as a wait-for-ready call) or fail (as a fail-fast one).
  bool connected() const {
    return connected_.load(std::memory_order_acquire) &&
           (channel_ == nullptr || channel_->GetState(false) == GRPC_CHANNEL_READY);
  }

  uint64_t calls_started() const { return calls_started_.load(std::memory_order_relaxed); }
  // Serializer only.
  const grpc::Status& last_error() const { return last_error_; }
  bool is_shutdown() const { return shutdown_; }
  // Serializer only: `fn` runs on the serializer after each connectivity
  // report from gRPC has been handled (and any state delivered).
  void SetAfterChange(std::function<void()> fn) { after_change_ = std::move(fn); }
  // Turns client-side health checking (gRFC A17) on for `service`, or off.
  // While on, the subchannel is READY for its policy only while the backend's
  // grpc.health.v1.Health/Watch says SERVING (or the backend does not
  // implement the health service).
  void SetHealthCheck(bool enabled, const std::string& service);
  // "SERVING", "NOT_SERVING", ... while health checking is on; "" otherwise.
  std::string health() const;

  // Tests: delivers `state` as if the connection reported it.
  void SetStateForTesting(ConnectivityState state, const grpc::Status& status = grpc::Status::OK);
  int connection_requests_for_testing() const { return connection_requests_; }

 private:
  SubchannelImpl(std::string address, SubchannelStateListener listener);
  void OnConnectivityChange(grpc_connectivity_state state);
  // Computes the state the policy sees from the connection and health, and
  // delivers it if it changed.
  void Update();
  void Deliver(ConnectivityState state, const grpc::Status& status);
  void StartHealthWatch();
  void StopHealthWatch();
  void OnHealthStatus(uint64_t generation, int status);
  void OnHealthDone(uint64_t generation, const grpc::Status& status);

  const std::string address_;
  std::shared_ptr<grpc::Channel> channel_;  // null for test subchannels
  std::shared_ptr<WorkSerializer> serializer_;
  SubchannelStateListener listener_;
  std::function<void()> after_change_;
  ConnectivityState state_ = ConnectivityState::kIdle;  // as delivered
  grpc::Status last_error_;

  // The connection's own state, and why it last failed (asked of gRPC by a
  // probe call, whose answer refines the first, generic reason).
  ConnectivityState raw_state_ = ConnectivityState::kIdle;
  uint64_t raw_generation_ = 0;
  grpc::Status connect_error_;
  std::atomic<bool> connected_{false};

  // Health checking. health_ holds a ServingStatus; -1 while unknown.
  bool health_enabled_ = false;
  std::string health_service_;
  int health_ = -1;
  bool health_unimplemented_ = false;
  bool health_got_response_ = false;
  grpc::Status health_error_;  // the last stream failure, while retrying
  int health_failures_ = 0;
  uint64_t health_generation_ = 0;
  uint64_t health_retry_timer_ = 0;
  std::shared_ptr<HealthWatch> health_watch_;
  bool shutdown_ = false;
  int connection_requests_ = 0;
  // Registered-call handles of this connection, one per method of lbkit's
  // channel (a registered call skips per-call method-name interning in gRPC).
  // Read by every call; written once per method.
  RegisteredMethods methods_;
  // Written by every call: on a cache line of its own, so that counting does
  // not slow down the reads above on other cores.
  alignas(64) std::atomic<uint64_t> calls_started_{0};
  char pad_[64 - sizeof(std::atomic<uint64_t>)] = {};
};

}  // namespace internal
}  // namespace lbkit

#endif  // LBKIT_SRC_CORE_SUBCHANNEL_H_
