// ClientConn: the shared core of one lbkit channel. It owns the work
// serializer, the resolver, the top balancer and the current picker, and
// routes each call. The channel handed to users (the stub adapter's facade)
// forwards to it.
//
// Its code follows design.md's flow, one responsibility a file:
//   client_conn.cc           construction, shutdown, snapshots
//   client_conn_resolver.cc  starting the resolver, its listener; resolver
//                            updates and errors; service config and policy
//   client_conn_helper.*     the root helper: where the policy's subchannels,
//                            timers and posts meet the channel
//   client_conn_picker.cc    publishing a policy's picker; routing each call
//   client_conn_queue.cc     calls waiting for a picker that can place them
//   client_conn_state.cc     the channel's connectivity state and its watches
//   create_channel.cc        lbkit::CreateChannel
#ifndef LBKIT_SRC_CORE_CLIENT_CONN_H_
#define LBKIT_SRC_CORE_CLIENT_CONN_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>

#include "core/call_relay.h"
#include "core/method_config.h"
#include "core/picker_slot.h"
#include "core/subchannel.h"
#include "core/work_serializer.h"
#include "lbkit/balancer.h"
#include "lbkit/channel.h"
#include "lbkit/service_config.h"

namespace lbkit {
namespace internal {

// ClientConn's answer for a call a stub is starting; the stub adapter makes
// the gRPC call from it (stub_adapter/channel_facade.cc).
struct CallRoute {
  enum class Kind {
    kPlace,  // on `subchannel`, with `on_done`; the pick's metadata is on the context
    kFail,   // with `status` (never OK): the pick failed, the deadline passed, shut down
    kQueue,  // `queued` waits in the channel's queue; the stub gets a relayed call
  };
  Kind kind = Kind::kFail;
  SubchannelImpl* subchannel = nullptr;
  CallDoneCallback on_done;
  std::optional<grpc::Status> status;  // nothing to build on the fast path
  std::shared_ptr<QueuedCall> queued;
  // kPlace: keeps the picker, and so `subchannel`, alive until the call is
  // created; release it then.
  std::optional<PickerSlot::ReadGuard> picker;
};

class ClientConn : public std::enable_shared_from_this<ClientConn> {
 public:
  ClientConn(std::string target, std::shared_ptr<grpc::ChannelCredentials> credentials,
             ChannelOptions options);
  ~ClientConn();

  // Starts `resolver` on the serializer.
  void Start(std::shared_ptr<Resolver> resolver);
  // For a channel that cannot work (bad target): TRANSIENT_FAILURE for good.
  void StartFailed(const grpc::Status& status);
  // See lbkit::Channel::Shutdown. Must not be called on the serializer.
  void Shutdown();
  ChannelSnapshot Snapshot();

  // The data plane, any thread.
  // Whether ChannelOptions::interceptor_factories is not empty.
  bool has_interceptors() const { return !options_.interceptor_factories.empty(); }
  // Applies the service config's methodConfig entry for `method` (timeout,
  // waitForReady; method_config.h) to `context`, before the call is routed:
  // the stub adapter calls it first, then reads the call's flags.
  // `wait_for_ready_explicit`: the application set wait-for-ready itself.
  void ApplyMethodConfig(std::string_view method, grpc::ClientContext* context,
                         bool wait_for_ready_explicit) {
    method_config_.OnCall(method, context, wait_for_ready_explicit);
  }
  // Routes a call a stub is starting. `args` holds its method, metadata and
  // wait-for-ready flag (the stub adapter reads those); the deadline is read
  // here from `context`, where the pick's metadata goes too.
  void RouteCall(PickArgs args, grpc::ClientContext* context, CallRoute* route);
  // lbkit's registration of a method a stub uses (its name and cache slot).
  MethodInfo* RegisterMethod(const char* method);
  grpc_connectivity_state GetState(bool try_to_connect);
  void NotifyOnStateChange(grpc_connectivity_state last_observed, gpr_timespec deadline,
                           grpc::CompletionQueue* cq, void* tag);
  bool WaitForStateChange(grpc_connectivity_state last_observed, gpr_timespec deadline);

 private:
  class RootHelper;
  class Listener;

  // Serializer only.
  void OnResolverUpdate(ResolverState state);
  void OnResolverError(const grpc::Status& status);
  void PublishState(const BalancerState& state);
  void FailChannel(const grpc::Status& status);
  void ShutdownOnSerializer();

  // A call the current picker could not place: fails it if its deadline has
  // passed, else queues it, for the stub to get a relayed call
  // (call_relay.h).
  void QueueCall(const PickArgs& args, grpc::ClientContext* context, uint64_t generation,
                 CallRoute* route);
  // DEADLINE_EXCEEDED for a call whose deadline passed before it was placed.
  grpc::Status ExpiredStatus() const;
  static const grpc::Status& ShutdownStatus();
  // The done-callback's status for a pick lbkit did not use (picker.h).
  static grpc::Status PickNotUsed(const SubchannelImpl& subchannel);
  static bool DeadlinePassed(gpr_timespec deadline);
  // Serializer only: offers every queued call to `picker`, in arrival order.
  void PickQueued(const Picker& picker);
  void SetState(ConnectivityState state, const grpc::Status& error);
  std::shared_ptr<grpc::Channel> NewSignalChannel();

  const std::string target_;
  const std::shared_ptr<grpc::ChannelCredentials> credentials_;
  const ChannelOptions options_;
  std::shared_ptr<WorkSerializer> serializer_;
  std::atomic<bool> shutting_down_{false};

  // The picker every call reads; written on the serializer only.
  PickerSlot picker_slot_;

  // Serializer only.
  std::unique_ptr<RootHelper> root_helper_;
  std::shared_ptr<Resolver> resolver_;
  std::shared_ptr<Listener> listener_;
  std::unique_ptr<ChildBalancer> top_;
  std::string top_name_;
  bool has_config_ = false;
  ServiceConfig config_;  // the last good one
  bool health_check_ = false;
  std::string health_check_service_;
  bool has_endpoints_ = false;
  // The config's methodConfig (timeouts, waitForReady, the gRPC-side part
  // for subchannels) and its warnings; see method_config.h.
  ChannelMethodConfig method_config_;
  // ChannelSnapshot's rejected_config_error, rejected_config and
  // policy_update_error.
  std::string rejected_config_error_;
  std::string rejected_config_;
  std::string policy_update_error_;

  // Calls waiting for a picker that can place them, in arrival order. The
  // lock guards the list only: picks run outside it.
  mutable std::mutex queue_mu_;
  std::deque<std::shared_ptr<internal::QueuedCall>> queue_;
  size_t purge_at_ = 64;                 // drop settled calls when the queue grows past this
  std::atomic<uint64_t> generation_{0};  // bumped under queue_mu_ on each publish
  bool queue_closed_ = false;
  std::shared_ptr<Picker> current_picker_;  // serializer only

  // The aggregate state, for GetState and the state-change waits.
  std::mutex state_mu_;
  std::condition_variable state_cv_;
  std::atomic<ConnectivityState> state_{ConnectivityState::kIdle};
  std::string last_error_;
  // A gRPC channel that stays IDLE until the state next changes: users'
  // NotifyOnStateChange watches wait on it, and a state change wakes them by
  // making it leave IDLE.
  std::shared_ptr<grpc::Channel> signal_;

  // Methods registered by stubs.
  std::mutex methods_mu_;
  std::map<std::string, std::unique_ptr<MethodInfo>> methods_;
};

}  // namespace internal
}  // namespace lbkit

#endif  // LBKIT_SRC_CORE_CLIENT_CONN_H_
