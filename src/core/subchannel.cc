#include "core/subchannel.h"

#include <arpa/inet.h>

#include <climits>
#include <utility>
#include <vector>

#include <grpc/grpc.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/support/client_interceptor.h>

#include "core/connectivity_watcher.h"
#include "core/stub_adapter.h"
#include "core/trace.h"

namespace lbkit {
namespace internal {
namespace {

ConnectivityState FromGrpc(grpc_connectivity_state state) {
  switch (state) {
    case GRPC_CHANNEL_IDLE:
      return ConnectivityState::kIdle;
    case GRPC_CHANNEL_CONNECTING:
      return ConnectivityState::kConnecting;
    case GRPC_CHANNEL_READY:
      return ConnectivityState::kReady;
    case GRPC_CHANNEL_TRANSIENT_FAILURE:
      return ConnectivityState::kTransientFailure;
    case GRPC_CHANNEL_SHUTDOWN:
      return ConnectivityState::kShutdown;
  }
  return ConnectivityState::kShutdown;
}

// The call-done callback travels from CreateCall to the interceptor factory
// through this slot: gRPC builds a call's interceptors synchronously inside
// CreateCall, on the same thread.
thread_local CallDoneCallback* pending_done = nullptr;

class CallDoneInterceptor final : public grpc::experimental::Interceptor {
 public:
  explicit CallDoneInterceptor(CallDoneCallback done) : done_(std::move(done)) {}
  ~CallDoneInterceptor() override {
    if (done_) done_(grpc::Status(grpc::StatusCode::CANCELLED, "call ended without a status"));
  }
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (done_ && methods->QueryInterceptionHookPoint(
                     grpc::experimental::InterceptionHookPoints::POST_RECV_STATUS)) {
      CallDoneCallback done = std::move(done_);
      done_ = nullptr;
      done(*methods->GetRecvStatus());
    }
    methods->Proceed();
  }

 private:
  CallDoneCallback done_;
};

class CallDoneInterceptorFactory final
    : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  grpc::experimental::Interceptor* CreateClientInterceptor(
      grpc::experimental::ClientRpcInfo* /*info*/) override {
    if (pending_done == nullptr || !*pending_done) return nullptr;  // no cost for most calls
    return new CallDoneInterceptor(std::move(*pending_done));
  }
};

bool IsIpv4Literal(const std::string& host) {
  in_addr addr;
  return inet_pton(AF_INET, host.c_str(), &addr) == 1;
}

}  // namespace

std::string AddressToGrpcTarget(const std::string& address) {
  if (address.rfind("unix:", 0) == 0 || address.rfind("unix-abstract:", 0) == 0) return address;
  if (!address.empty() && address[0] == '[') return "ipv6:" + address;
  size_t colon = address.rfind(':');
  std::string host = colon == std::string::npos ? address : address.substr(0, colon);
  if (IsIpv4Literal(host)) return "ipv4:" + address;
  return "dns:///" + address;
}

SubchannelImpl::SubchannelImpl(std::string address, SubchannelStateListener listener)
    : address_(std::move(address)), listener_(std::move(listener)) {}

std::shared_ptr<SubchannelImpl> SubchannelImpl::Create(
    std::string address, const std::shared_ptr<grpc::ChannelCredentials>& credentials,
    const grpc::ChannelArguments& args, std::shared_ptr<WorkSerializer> serializer,
    SubchannelStateListener listener) {
  std::shared_ptr<SubchannelImpl> subchannel(
      new SubchannelImpl(std::move(address), std::move(listener)));
  subchannel->serializer_ = std::move(serializer);

  grpc::ChannelArguments channel_args = args;
  // Each subchannel is its own connection, even to an address another
  // subchannel (or channel) already uses.
  channel_args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  // lbkit, not the grpc::Channel, decides when a connection may go idle.
  channel_args.SetInt(GRPC_ARG_CLIENT_IDLE_TIMEOUT_MS, INT_MAX);
  channel_args.SetLoadBalancingPolicyName("pick_first");
  channel_args.SetInt(GRPC_ARG_SERVICE_CONFIG_DISABLE_RESOLUTION, 1);
  std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> factories;
  factories.push_back(std::make_unique<CallDoneInterceptorFactory>());
  subchannel->channel_ = grpc::experimental::CreateCustomChannelWithInterceptors(
      AddressToGrpcTarget(subchannel->address_), credentials, channel_args, std::move(factories));

  std::weak_ptr<SubchannelImpl> weak = subchannel;
  std::weak_ptr<WorkSerializer> weak_serializer = subchannel->serializer_;
  ConnectivityWatcher::Get().Watch(subchannel->channel_, GRPC_CHANNEL_IDLE,
                                   [weak, weak_serializer](grpc_connectivity_state state) {
                                     std::shared_ptr<WorkSerializer> serializer =
                                         weak_serializer.lock();
                                     if (serializer == nullptr || weak.expired()) return false;
                                     return serializer->Run([weak, state] {
                                       if (std::shared_ptr<SubchannelImpl> self = weak.lock())
                                         self->OnConnectivityChange(state);
                                     });
                                   });
  return subchannel;
}

std::shared_ptr<SubchannelImpl> SubchannelImpl::CreateForTesting(std::string address,
                                                                 SubchannelStateListener listener) {
  return std::shared_ptr<SubchannelImpl>(
      new SubchannelImpl(std::move(address), std::move(listener)));
}

SubchannelImpl::~SubchannelImpl() {
  for (auto& slot : methods_) delete slot.load(std::memory_order_acquire);
}

void SubchannelImpl::RequestConnection() {
  if (shutdown_) return;
  ++connection_requests_;
  if (channel_ != nullptr) channel_->GetState(/*try_to_connect=*/true);
}

void SubchannelImpl::ResetBackoff() {
  if (channel_ != nullptr) grpc::experimental::ChannelResetConnectionBackoff(channel_.get());
}

void SubchannelImpl::Shutdown() {
  if (shutdown_) return;
  shutdown_ = true;
  Trace(TraceFlag::kSubchannel, "subchannel ", address_, ": shut down");
  SubchannelStateListener listener = std::move(listener_);  // released here, not in a callback
  listener_ = nullptr;
}

void SubchannelImpl::OnConnectivityChange(grpc_connectivity_state grpc_state) {
  if (shutdown_) return;
  SetStateForTesting(FromGrpc(grpc_state), grpc_state == GRPC_CHANNEL_TRANSIENT_FAILURE
                                               ? grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                                              "failed to connect to " + address_)
                                               : grpc::Status::OK);
}

void SubchannelImpl::SetStateForTesting(ConnectivityState state, const grpc::Status& status) {
  if (shutdown_ || state == state_) return;
  Trace(TraceFlag::kSubchannel, "subchannel ", address_, ": ", ToString(state_), " -> ",
        ToString(state), status.ok() ? "" : " (" + status.error_message() + ")");
  state_ = state;
  if (!status.ok()) last_error_ = status;
  if (listener_) listener_(state, status);
}

const grpc::internal::RpcMethod& SubchannelImpl::CachedMethod(
    const grpc::internal::RpcMethod& method, const MethodInfo& info) {
  std::atomic<const grpc::internal::RpcMethod*>& slot = methods_[info.index];
  const grpc::internal::RpcMethod* cached = slot.load(std::memory_order_acquire);
  if (cached != nullptr) return *cached;
  // First call of this method here: register it on this connection. gRPC
  // returns the same handle for the same name, so a lost race is harmless.
  auto* fresh = new grpc::internal::RpcMethod(method.name(), method.suffix_for_stats(),
                                              method.method_type(), channel_);
  if (slot.compare_exchange_strong(cached, fresh, std::memory_order_acq_rel)) return *fresh;
  delete fresh;
  return *cached;
}

grpc::internal::Call SubchannelImpl::CreateCall(const grpc::internal::RpcMethod& method,
                                                const MethodInfo* method_info,
                                                grpc::ClientContext* context,
                                                grpc::CompletionQueue* cq,
                                                CallDoneCallback on_done) {
  calls_started_.fetch_add(1, std::memory_order_relaxed);
  const grpc::internal::RpcMethod* to_use;
  grpc::internal::RpcMethod unregistered(method.name(), method.suffix_for_stats(),
                                         method.method_type());
  if (method_info != nullptr && method_info->index < kCachedMethods) {
    to_use = &CachedMethod(method, *method_info);
  } else {
    to_use = &unregistered;
  }
  if (!on_done) return StubAdapter::CreateCall(channel_.get(), *to_use, context, cq);
  pending_done = &on_done;
  grpc::internal::Call call = StubAdapter::CreateCall(channel_.get(), *to_use, context, cq);
  pending_done = nullptr;
  return call;
}

}  // namespace internal
}  // namespace lbkit
