// The channel stubs drive, and the making of each call from ClientConn's
// CallRoute (stub_adapter.h, items 2 and 5 to 13).
#include <memory>
#include <string_view>
#include <utility>

#include <grpcpp/client_context.h>
#include <grpcpp/completion_queue.h>
#include <grpcpp/impl/call.h>
#include <grpcpp/impl/rpc_method.h>

#include "core/call_relay.h"
#include "core/client_conn.h"
#include "core/stub_adapter/hooks.h"
#include "core/stub_adapter/lame_channel.h"
#include "core/stub_adapter/stub_adapter.h"
#include "core/subchannel.h"

namespace lbkit {
namespace internal {

RegisteredMethods::~RegisteredMethods() {
  for (auto& slot : slots_) delete slot.load(std::memory_order_acquire);
}

const grpc::internal::RpcMethod& RegisteredMethods::Get(
    const grpc::internal::RpcMethod& method, size_t index,
    const std::shared_ptr<grpc::Channel>& channel) {
  std::atomic<const grpc::internal::RpcMethod*>& slot = slots_[index];
  const grpc::internal::RpcMethod* cached = slot.load(std::memory_order_acquire);
  if (cached != nullptr) return *cached;
  // First call of this method here: register it on this connection. gRPC
  // returns the same handle for the same name, so a lost race is harmless.
  auto* fresh = new grpc::internal::RpcMethod(method.name(), method.suffix_for_stats(),
                                              method.method_type(), channel);
  if (slot.compare_exchange_strong(cached, fresh, std::memory_order_acq_rel)) return *fresh;
  delete fresh;
  return *cached;
}

namespace {

// A call lbkit fails: a real call on a lame channel, so that the stub drives
// it as any other and sees `status`.
grpc::internal::Call FailedCall(const grpc::Status& status, const grpc::internal::RpcMethod& method,
                                grpc::ClientContext* context, grpc::CompletionQueue* cq) {
  grpc::internal::RpcMethod unregistered(method.name(), method.suffix_for_stats(),
                                         method.method_type());
  std::shared_ptr<grpc::Channel> lame = LameChannel(status);
  return Hooks::CreateCall(lame.get(), unregistered, context, cq);
}

// A call waiting in ClientConn's queue: the stub gets a call on the relay's
// in-process channel, which the relay joins to the real call once placed.
grpc::internal::Call RelayedCall(const std::shared_ptr<QueuedCall>& queued,
                                 const grpc::internal::RpcMethod& method,
                                 grpc::ClientContext* context, grpc::CompletionQueue* cq) {
  const auto type = method.method_type();
  RelayedCallStart start(queued, type == grpc::internal::RpcMethod::NORMAL_RPC ||
                                     type == grpc::internal::RpcMethod::SERVER_STREAMING);
  grpc::internal::RpcMethod relay_method(start.method(), method.suffix_for_stats(),
                                         method.method_type());
  return Hooks::CreateCall(start.channel(), relay_method, context, cq);
}

// A call placed on `subchannel`: created on its grpc::Channel, as a
// registered call when lbkit registered the method.
grpc::internal::Call PlacedCall(SubchannelImpl& subchannel, const grpc::internal::RpcMethod& method,
                                const MethodInfo* method_info, grpc::ClientContext* context,
                                grpc::CompletionQueue* cq, CallDoneCallback&& on_done) {
  return subchannel.StartCall(std::move(on_done), [&](const std::shared_ptr<grpc::Channel>& channel,
                                                      RegisteredMethods& registered) {
    const grpc::internal::RpcMethod* to_use;
    grpc::internal::RpcMethod unregistered(method.name(), method.suffix_for_stats(),
                                           method.method_type());
    if (method_info != nullptr && method_info->index < RegisteredMethods::kSize) {
      to_use = &registered.Get(method, method_info->index, channel);
    } else {
      to_use = &unregistered;
    }
    return Hooks::CreateCall(channel.get(), *to_use, context, cq);
  });
}

// What CreateChannel hands out: the grpc::ChannelInterface stubs drive.
class LbChannel final : public Channel {
 public:
  explicit LbChannel(std::shared_ptr<ClientConn> conn) : conn_(std::move(conn)) {
    SharedCallbackCQ();  // lbkit's hold on gRPC's callback queue (item 12)
  }
  ~LbChannel() override { conn_->Shutdown(); }

  grpc_connectivity_state GetState(bool try_to_connect) override {
    return conn_->GetState(try_to_connect);
  }
  void Shutdown() override { conn_->Shutdown(); }
  ChannelSnapshot Snapshot() override { return conn_->Snapshot(); }

 private:
  grpc::internal::Call CreateCall(const grpc::internal::RpcMethod& method,
                                  grpc::ClientContext* context,
                                  grpc::CompletionQueue* cq) override {
    // The tag RegisterMethod returned, for a stub's (registered) method.
    const auto* method_info = static_cast<const MethodInfo*>(method.channel_tag());
    PickArgs args;
    // The registered name is the same string with its length known: no strlen.
    args.method = method_info != nullptr ? std::string_view(method_info->name)
                                         : std::string_view(method.name());
    // methodConfig timeout and waitForReady first: everything below, the
    // queue and the relay included, sees the call as the config made it.
    conn_->ApplyMethodConfig(args.method, context, Hooks::WaitForReadyExplicitlySet(*context));
    args.metadata = &Hooks::SendMetadata(*context);
    args.wait_for_ready = Hooks::WaitForReady(*context);
    CallRoute route;
    conn_->RouteCall(args, context, &route);
    switch (route.kind) {
      case CallRoute::Kind::kPlace:
        if (conn_->has_interceptors()) {
          // The application's interceptor factories run inside the call's
          // creation and may block or start calls of their own: hold the
          // subchannel itself, not the picker, whose next publication
          // waits for its readers.
          std::shared_ptr<SubchannelImpl> held = route.subchannel->shared_from_this();
          route.picker.reset();
          return PlacedCall(*held, method, method_info, context, cq, std::move(route.on_done));
        }
        // route.picker keeps the subchannel alive until this returns.
        return PlacedCall(*route.subchannel, method, method_info, context, cq,
                          std::move(route.on_done));
      case CallRoute::Kind::kQueue:
        return RelayedCall(route.queued, method, context, cq);
      case CallRoute::Kind::kFail:
        break;
    }
    return FailedCall(*route.status, method, context, cq);
  }
  // Calls created above carry their subchannel's grpc::Channel as their hook,
  // so gRPC sends their ops there; this is only a fallback (item 9).
  void PerformOpsOnCall(grpc::internal::CallOpSetInterface* ops,
                        grpc::internal::Call* call) override {
    call->PerformOps(ops);
  }
  void* RegisterMethod(const char* method) override { return conn_->RegisterMethod(method); }
  void NotifyOnStateChangeImpl(grpc_connectivity_state last_observed, gpr_timespec deadline,
                               grpc::CompletionQueue* cq, void* tag) override {
    conn_->NotifyOnStateChange(last_observed, deadline, cq, tag);
  }
  bool WaitForStateChangeImpl(grpc_connectivity_state last_observed,
                              gpr_timespec deadline) override {
    return conn_->WaitForStateChange(last_observed, deadline);
  }
  grpc::CompletionQueue* CallbackCQ() override { return SharedCallbackCQ(); }

  std::shared_ptr<ClientConn> conn_;
};

}  // namespace

std::shared_ptr<Channel> NewChannelFacade(std::shared_ptr<ClientConn> conn) {
  return std::make_shared<LbChannel>(std::move(conn));
}

}  // namespace internal
}  // namespace lbkit
