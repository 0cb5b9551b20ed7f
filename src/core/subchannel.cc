#include "core/subchannel.h"

#include <arpa/inet.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <mutex>
#include <random>
#include <set>
#include <stdexcept>
#include <utility>
#include <vector>

#include <grpc/grpc.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/support/client_interceptor.h>

#include "core/address.h"
#include "core/connectivity.h"
#include "core/connectivity_watcher.h"
#include "core/guarded_pick.h"
#include "core/health_check.h"
#include "core/trace.h"

namespace lbkit {
namespace internal {
namespace {

// Hands the pick's done-callback the call's status and trailing metadata.
// gRPC runs POST_RECV_STATUS when the application takes the status (inside
// CompletionQueue::Next for async calls), which is why picker.h cannot promise
// more for direct calls.
class CallDoneInterceptor final : public grpc::experimental::Interceptor {
 public:
  explicit CallDoneInterceptor(CallDoneCallback done) : done_(std::move(done)) {}
  ~CallDoneInterceptor() override {
    // Destroyed with the ClientContext: the status was never taken.
    if (done_) {
      RunDone(done_, CallDoneInfo(
                         grpc::Status(grpc::StatusCode::CANCELLED, "call ended without a status")));
    }
  }
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (done_ && methods->QueryInterceptionHookPoint(
                     grpc::experimental::InterceptionHookPoints::POST_RECV_STATUS)) {
      CallDoneCallback done = std::move(done_);
      done_ = nullptr;
      // The map is the ClientContext's own view of the trailers: valid for the
      // callback, which is all CallDoneInfo promises.
      RunDone(done, CallDoneInfo(*methods->GetRecvStatus(), methods->GetRecvTrailingMetadata()));
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
    // The call-done callback travels from StartCall to here through this
    // slot: gRPC builds a call's interceptors synchronously inside its
    // creation, on the same thread.
    if (pending_call_done == nullptr || !*pending_call_done) return nullptr;  // no cost for most
    return new CallDoneInterceptor(std::move(*pending_call_done));
  }
};

// ChannelOptions::interceptor_factories: gRPC owns the factories it is given,
// one set per grpc::Channel, while the user's are shared by every subchannel.
class SharedInterceptorFactory final
    : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit SharedInterceptorFactory(
      std::shared_ptr<grpc::experimental::ClientInterceptorFactoryInterface> factory)
      : factory_(std::move(factory)) {}
  grpc::experimental::Interceptor* CreateClientInterceptor(
      grpc::experimental::ClientRpcInfo* info) override {
    // lbkit's own calls on the connection (health watches, the connection
    // error probe) are not the application's.
    if (creating_internal_call) return nullptr;
    return factory_->CreateClientInterceptor(info);
  }

 private:
  std::shared_ptr<grpc::experimental::ClientInterceptorFactoryInterface> factory_;
};

}  // namespace

std::string AddressToGrpcTarget(const std::string& address) {
  if (address.rfind("unix:", 0) == 0 || address.rfind("unix-abstract:", 0) == 0) return address;
  if (!address.empty() && address[0] == '[') return "ipv6:" + address;
  if (AddressIpFamily(address) == AF_INET) return "ipv4:" + address;
  return "dns:///" + address;
}

SubchannelImpl::SubchannelImpl(std::string address, SubchannelStateListener listener)
    : address_(std::move(address)), listener_(std::move(listener)) {}

namespace {

bool HasArg(const grpc::ChannelArguments& args, const char* key) {
  grpc_channel_args c_args = args.c_channel_args();
  for (size_t i = 0; i < c_args.num_args; ++i) {
    if (std::strcmp(c_args.args[i].key, key) == 0) return true;
  }
  return false;
}

}  // namespace

std::shared_ptr<SubchannelImpl> SubchannelImpl::Create(
    std::string address, const std::shared_ptr<grpc::ChannelCredentials>& credentials,
    const grpc::ChannelArguments& args, std::shared_ptr<WorkSerializer> serializer,
    SubchannelStateListener listener,
    const std::vector<std::shared_ptr<grpc::experimental::ClientInterceptorFactoryInterface>>&
        interceptors) {
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
  // A subchannel's grpc::Channel is lbkit's, not the application's: without
  // this, each one is a top-level channel in channelz, with its own node and
  // trace buffer (heap and time per endpoint). An application that asks for
  // channelz in ChannelOptions::channel_args keeps it.
  if (!HasArg(channel_args, GRPC_ARG_ENABLE_CHANNELZ)) {
    channel_args.SetInt(GRPC_ARG_ENABLE_CHANNELZ, 0);
  }
  std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> factories;
  // The application's interceptors first, in its order; lbkit's last, so that
  // it sees the status as gRPC delivered it (ChannelOptions::interceptor_factories).
  for (const auto& factory : interceptors) {
    if (factory != nullptr)
      factories.push_back(std::make_unique<SharedInterceptorFactory>(factory));
  }
  factories.push_back(std::make_unique<CallDoneInterceptorFactory>());
  subchannel->channel_ = grpc::experimental::CreateCustomChannelWithInterceptors(
      AddressToGrpcTarget(subchannel->address_), credentials, channel_args, std::move(factories));

  std::weak_ptr<SubchannelImpl> weak = subchannel;
  std::weak_ptr<WorkSerializer> weak_serializer = subchannel->serializer_;
  ConnectivityWatcher::Watch(subchannel->channel_, GRPC_CHANNEL_IDLE,
                             [weak, weak_serializer](grpc_connectivity_state state) {
                               std::shared_ptr<SubchannelImpl> self = weak.lock();
                               std::shared_ptr<WorkSerializer> serializer = weak_serializer.lock();
                               if (self == nullptr || serializer == nullptr) return false;
                               // The pick path learns of the change now. The policy
                               // too, on this (lbkit's IoLoop) thread, when the channel's
                               // control plane is idle: a READY connection reaches the
                               // picker, and a queued call the relay, with no thread hop.
                               self->connected_.store(state == GRPC_CHANNEL_READY,
                                                      std::memory_order_release);
                               return serializer->RunHere([weak, state] {
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
  if (health_watch_ != nullptr) health_watch_->Cancel();
}

void SubchannelImpl::RequestConnection() {
  if (shutdown_) return;
  ++connection_requests_;
  if (channel_ == nullptr) return;
  // Off the serializer: leaving IDLE builds the grpc::Channel's resolver,
  // policy and connection attempt, which for a policy connecting a thousand
  // endpoints was most of the turn that created them; on the pool the
  // requests run side by side, and READY reports are not held up.
  RunOnControlPool([channel = channel_] { channel->GetState(/*try_to_connect=*/true); });
}

void SubchannelImpl::ResetBackoff() {
  if (channel_ != nullptr) grpc::experimental::ChannelResetConnectionBackoff(channel_.get());
}

void SubchannelImpl::Shutdown() {
  if (shutdown_) return;
  shutdown_ = true;
  StopHealthWatch();
  Trace(TraceFlag::kSubchannel, "subchannel ", address_, ": shut down");
  SubchannelStateListener listener = std::move(listener_);  // released here, not in a callback
  listener_ = nullptr;
  after_change_ = nullptr;
}

void SubchannelImpl::OnConnectivityChange(grpc_connectivity_state grpc_state) {
  if (shutdown_) return;
  raw_state_ = FromGrpc(grpc_state);
  const uint64_t generation = ++raw_generation_;
  if (raw_state_ != ConnectivityState::kReady) {
    StopHealthWatch();
    health_ = -1;
    health_failures_ = 0;
    health_unimplemented_ = false;  // A17: decided per connection
  }
  if (raw_state_ == ConnectivityState::kTransientFailure) {
    // The policy hears of the failure now; gRPC's reason, asked of it by a
    // probe call, follows as a second TRANSIENT_FAILURE with the details.
    connect_error_ =
        grpc::Status(grpc::StatusCode::UNAVAILABLE, "connection to " + address_ + " failed");
    std::weak_ptr<SubchannelImpl> weak = weak_from_this();
    std::shared_ptr<WorkSerializer> serializer = serializer_;
    ProbeConnectionError(channel_, [weak, serializer, generation](const grpc::Status& status) {
      serializer->Run([weak, generation, status] {
        std::shared_ptr<SubchannelImpl> self = weak.lock();
        if (self == nullptr || self->raw_generation_ != generation) return;
        std::string why = status.error_message();
        const std::string prefix = "failed to connect to all addresses; last error: ";
        if (why.rfind(prefix, 0) == 0) why = why.substr(prefix.size());
        if (status.ok() || why.empty()) return;
        self->connect_error_ = grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                            "connection to " + self->address_ + " failed: " + why);
        self->Update();
      });
    });
  }
  if (raw_state_ == ConnectivityState::kReady && health_enabled_) StartHealthWatch();
  Update();
  if (after_change_) after_change_();
}

void SubchannelImpl::Update() {
  if (raw_state_ == ConnectivityState::kTransientFailure) {
    Deliver(ConnectivityState::kTransientFailure, connect_error_);
    return;
  }
  if (raw_state_ != ConnectivityState::kReady || !health_enabled_ || health_unimplemented_) {
    Deliver(raw_state_, grpc::Status::OK);
    return;
  }
  if (health_ == static_cast<int>(ServingStatus::kServing)) {
    Deliver(ConnectivityState::kReady, grpc::Status::OK);
  } else if (!health_error_.ok()) {
    Deliver(ConnectivityState::kTransientFailure, health_error_);
  } else if (health_ < 0) {
    Deliver(ConnectivityState::kConnecting, grpc::Status::OK);  // waiting for the first answer
  } else {
    Deliver(ConnectivityState::kTransientFailure,
            grpc::Status(grpc::StatusCode::UNAVAILABLE,
                         "health check: " + address_ + " reports " +
                             ToString(static_cast<ServingStatus>(health_)) + " for service \"" +
                             health_service_ + "\""));
  }
}

void SubchannelImpl::SetHealthCheck(bool enabled, const std::string& service) {
  if (enabled == health_enabled_ && service == health_service_) return;
  health_enabled_ = enabled;
  health_service_ = service;
  StopHealthWatch();
  health_ = -1;
  health_unimplemented_ = false;
  health_failures_ = 0;
  if (enabled && raw_state_ == ConnectivityState::kReady) StartHealthWatch();
  Update();
}

std::string SubchannelImpl::health() const {
  if (!health_enabled_) return "";
  if (health_unimplemented_) return "UNIMPLEMENTED (treated as SERVING)";
  if (!health_error_.ok()) return "stream failed";
  return health_ < 0 ? "waiting" : ToString(static_cast<ServingStatus>(health_));
}

void SubchannelImpl::StartHealthWatch() {
  if (channel_ == nullptr || shutdown_ || health_unimplemented_) return;
  StopHealthWatch();
  const uint64_t generation = health_generation_;
  health_got_response_ = false;
  std::weak_ptr<SubchannelImpl> weak = weak_from_this();
  std::shared_ptr<WorkSerializer> serializer = serializer_;
  health_watch_ = HealthWatch::Start(
      channel_, health_service_,
      [weak, serializer, generation](ServingStatus status) {
        serializer->Run([weak, generation, status] {
          if (auto self = weak.lock()) self->OnHealthStatus(generation, static_cast<int>(status));
        });
      },
      [weak, serializer, generation](const grpc::Status& status) {
        serializer->Run([weak, generation, status] {
          if (auto self = weak.lock()) self->OnHealthDone(generation, status);
        });
      });
}

void SubchannelImpl::StopHealthWatch() {
  ++health_generation_;  // events of the old stream are dropped from here on
  if (health_watch_ != nullptr) health_watch_->Cancel();
  health_watch_ = nullptr;
  if (health_retry_timer_ != 0 && serializer_ != nullptr) serializer_->Cancel(health_retry_timer_);
  health_retry_timer_ = 0;
  health_error_ = grpc::Status::OK;
}

void SubchannelImpl::OnHealthStatus(uint64_t generation, int status) {
  if (generation != health_generation_ || shutdown_) return;
  Trace(TraceFlag::kSubchannel, "subchannel ", address_, ": health ",
        ToString(static_cast<ServingStatus>(status)));
  health_ = status;
  health_got_response_ = true;
  health_failures_ = 0;
  Update();
}

void SubchannelImpl::OnHealthDone(uint64_t generation, const grpc::Status& status) {
  if (generation != health_generation_ || shutdown_) return;
  health_watch_ = nullptr;
  if (raw_state_ != ConnectivityState::kReady) return;
  if (status.error_code() == grpc::StatusCode::UNIMPLEMENTED) {
    // A17: a backend without the health service counts as healthy.
    static std::mutex mu;
    static auto* logged = new std::set<std::string>();
    {
      std::lock_guard<std::mutex> lock(mu);
      if (logged->insert(address_).second) {
        LogLine("health check: " + address_ +
                " does not implement grpc.health.v1.Health; treating it as healthy");
      }
    }
    health_unimplemented_ = true;
    Update();
    return;
  }
  // Any other end: retry, at once if the stream had worked, else with
  // exponential backoff (1 s, x1.6, up to 120 s, +-20% jitter).
  health_error_ = grpc::Status(
      grpc::StatusCode::UNAVAILABLE,
      "health check stream to " + address_ + " failed: " + status.error_message() + "; retrying");
  health_ = -1;
  std::chrono::milliseconds delay(0);
  if (!health_got_response_) {
    double seconds = 1.0;
    for (int i = 0; i < health_failures_ && seconds < 120; ++i) seconds *= 1.6;
    seconds = std::min(seconds, 120.0);
    static thread_local std::mt19937 rng{std::random_device{}()};
    seconds *= std::uniform_real_distribution<double>(0.8, 1.2)(rng);
    delay = std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
    ++health_failures_;
  }
  Trace(TraceFlag::kSubchannel, "subchannel ", address_, ": ", health_error_.error_message(),
        " in ", delay.count(), " ms");
  std::weak_ptr<SubchannelImpl> weak = weak_from_this();
  health_retry_timer_ = serializer_->RunAfter(delay, [weak] {
    std::shared_ptr<SubchannelImpl> self = weak.lock();
    if (self == nullptr) return;
    self->health_retry_timer_ = 0;
    if (self->raw_state_ == ConnectivityState::kReady && self->health_enabled_) {
      grpc::Status error = self->health_error_;
      self->StartHealthWatch();
      self->health_error_ = error;  // stays visible until the new stream answers
    }
  });
  Update();
}

void SubchannelImpl::SetStateForTesting(ConnectivityState state, const grpc::Status& status) {
  connected_.store(state == ConnectivityState::kReady, std::memory_order_release);
  Deliver(state, status);
}

void SubchannelImpl::Deliver(ConnectivityState state, const grpc::Status& status) {
  if (shutdown_) return;
  // The same state again only to tell a better reason for a failure.
  if (state == state_ && (state != ConnectivityState::kTransientFailure ||
                          status.error_message() == last_error_.error_message())) {
    return;
  }
  if (state == state_) {
    Trace(TraceFlag::kSubchannel, "subchannel ", address_, ": ", ToString(state), " because ",
          status.error_message());
  } else {
    Trace(TraceFlag::kSubchannel, "subchannel ", address_, ": ", ToString(state_), " -> ",
          ToString(state), status.ok() ? "" : " (" + status.error_message() + ")");
  }
  state_ = state;
  if (!status.ok()) last_error_ = status;
  // A copy: the listener may shut this subchannel down, which destroys
  // listener_ while it runs.
  SubchannelStateListener listener = listener_;
  if (listener) listener(state, status);
}

std::unique_ptr<grpc::GenericClientAsyncReaderWriter> SubchannelImpl::StartGenericCall(
    grpc::ClientContext* context, const std::string& method, grpc::CompletionQueue* cq,
    CallDoneCallback on_done) {
  calls_started_.fetch_add(1, std::memory_order_relaxed);
  grpc::GenericStub stub(channel_);
  PendingCallDone pending(on_done ? &on_done : nullptr);
  return stub.PrepareCall(context, method, cq);
}

}  // namespace internal
}  // namespace lbkit

namespace lbkit {

namespace {
// Checked before the base is built from it: a null one is the caller's bug,
// reported as a throw (which a policy's ChildBalancer catches) instead of a
// crash on one of lbkit's threads.
Subchannel& Checked(const std::shared_ptr<Subchannel>& wrapped) {
  if (wrapped == nullptr) {
    throw std::invalid_argument("lbkit::ForwardingSubchannel: the wrapped subchannel is null");
  }
  return *wrapped;
}
}  // namespace

ForwardingSubchannel::ForwardingSubchannel(std::shared_ptr<Subchannel> wrapped)
    : Subchannel(Checked(wrapped).innermost_), wrapped_(std::move(wrapped)) {}

ForwardingSubchannel::~ForwardingSubchannel() = default;

}  // namespace lbkit
