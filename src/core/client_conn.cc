#include "core/client_conn.h"

#include <algorithm>
#include <chrono>
#include <deque>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string_view>
#include <utility>

#include <grpc/support/time.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>

#include "core/address.h"
#include "core/call_info.h"
#include "core/guarded_pick.h"
#include "core/lame_channel.h"
#include "core/shown_text.h"
#include "core/stub_adapter.h"
#include "core/trace.h"

namespace lbkit {
namespace internal {
namespace {

grpc_connectivity_state ToGrpc(ConnectivityState state) {
  switch (state) {
    case ConnectivityState::kIdle:
      return GRPC_CHANNEL_IDLE;
    case ConnectivityState::kConnecting:
      return GRPC_CHANNEL_CONNECTING;
    case ConnectivityState::kReady:
      return GRPC_CHANNEL_READY;
    case ConnectivityState::kTransientFailure:
      return GRPC_CHANNEL_TRANSIENT_FAILURE;
    case ConnectivityState::kShutdown:
      return GRPC_CHANNEL_SHUTDOWN;
  }
  return GRPC_CHANNEL_SHUTDOWN;
}

const grpc::Status& ShutdownStatus() {
  static const grpc::Status* status =
      new grpc::Status(grpc::StatusCode::UNAVAILABLE, "lbkit channel shut down");
  return *status;
}

// A deadline as a steady-clock time point; max() for none.
std::chrono::steady_clock::time_point SteadyDeadline(gpr_timespec deadline) {
  if (gpr_time_cmp(deadline, gpr_inf_future(deadline.clock_type)) == 0) {
    return std::chrono::steady_clock::time_point::max();
  }
  // Any clock, relative (GPR_TIMESPAN) included, as gRPC itself accepts.
  deadline = gpr_convert_clock_type(deadline, GPR_CLOCK_MONOTONIC);
  gpr_timespec remaining = gpr_time_sub(deadline, gpr_now(GPR_CLOCK_MONOTONIC));
  auto nanos = std::chrono::seconds(remaining.tv_sec) + std::chrono::nanoseconds(remaining.tv_nsec);
  return std::chrono::steady_clock::now() +
         std::chrono::duration_cast<std::chrono::steady_clock::duration>(nanos);
}

// The done-callback's status for a pick lbkit did not use (picker.h).
grpc::Status PickNotUsed(const SubchannelImpl& subchannel) {
  return grpc::Status(grpc::StatusCode::CANCELLED, "lbkit: pick not used: connection to " +
                                                       subchannel.address() +
                                                       " is not READY; nothing was sent");
}

bool DeadlinePassed(gpr_timespec deadline) {
  if (deadline.clock_type == GPR_TIMESPAN)
    return gpr_time_cmp(deadline, gpr_time_0(GPR_TIMESPAN)) <= 0;
  if (gpr_time_cmp(deadline, gpr_inf_future(deadline.clock_type)) == 0) return false;
  return gpr_time_cmp(deadline, gpr_now(deadline.clock_type)) <= 0;
}

class SerializerTimer final : public Timer {
 public:
  SerializerTimer(std::shared_ptr<WorkSerializer> serializer, uint64_t id)
      : serializer_(std::move(serializer)), id_(id) {}
  ~SerializerTimer() override { serializer_->Cancel(id_); }

 private:
  std::shared_ptr<WorkSerializer> serializer_;
  uint64_t id_;
};

}  // namespace

// The helper of the top balancer's ChildBalancer: where subchannels, timers
// and posts meet the channel.
class ClientConn::RootHelper final : public Helper {
 public:
  explicit RootHelper(ClientConn* conn) : conn_(conn) {}

  std::shared_ptr<Subchannel> CreateSubchannel(const std::string& address,
                                               SubchannelStateListener listener) override {
    // With the service config's gRPC-side part (method_config.h) and the
    // application's interceptors (ChannelOptions::interceptor_factories).
    std::shared_ptr<SubchannelImpl> subchannel = SubchannelImpl::Create(
        address, conn_->credentials_,
        conn_->method_config_.SubchannelArgs(conn_->options_.channel_args), conn_->serializer_,
        std::move(listener), conn_->options_.interceptor_factories);
    // After each report from gRPC has reached the policy (which may have
    // published a new picker), queued calls are offered to the current picker
    // again: a call that met a connection going down waits for that
    // connection's next state even under a policy that publishes nothing new.
    ClientConn* conn = conn_;
    subchannel->SetAfterChange([conn] {
      if (conn->current_picker_ != nullptr) conn->PickQueued(*conn->current_picker_);
    });
    if (subchannels_.size() >= 2 * live_hint_ + 16) {
      std::vector<std::weak_ptr<SubchannelImpl>> live;
      for (auto& weak : subchannels_) {
        std::shared_ptr<SubchannelImpl> sc = weak.lock();
        if (sc != nullptr && !sc->is_shutdown()) live.push_back(std::move(weak));
      }
      subchannels_ = std::move(live);
      live_hint_ = subchannels_.size();
    }
    subchannels_.push_back(subchannel);
    subchannel->SetHealthCheck(conn_->health_check_, conn_->health_check_service_);
    Trace(TraceFlag::kSubchannel, "subchannel ", address, ": created");
    return subchannel;
  }

  void UpdateState(BalancerState state) override { conn_->PublishState(state); }

  void RequestReresolution() override {
    Trace(TraceFlag::kResolver, conn_->target_, ": re-resolution requested");
    if (conn_->resolver_ != nullptr) conn_->resolver_->RequestReresolution();
  }

  std::unique_ptr<Timer> StartTimer(std::chrono::milliseconds delay,
                                    std::function<void()> fn) override {
    uint64_t id = conn_->serializer_->RunAfter(delay, std::move(fn));
    return std::make_unique<SerializerTimer>(conn_->serializer_, id);
  }

  void Post(std::function<void()> fn) override { conn_->serializer_->Run(std::move(fn)); }

  const std::string& target() const override { return conn_->target_; }

  std::vector<std::shared_ptr<SubchannelImpl>> Live() const {
    std::vector<std::shared_ptr<SubchannelImpl>> live;
    for (const auto& weak : subchannels_) {
      std::shared_ptr<SubchannelImpl> sc = weak.lock();
      if (sc != nullptr && !sc->is_shutdown()) live.push_back(std::move(sc));
    }
    return live;
  }

 private:
  ClientConn* conn_;
  std::vector<std::weak_ptr<SubchannelImpl>> subchannels_;
  size_t live_hint_ = 0;
};

// The channel's ResolverListener: hops onto the serializer. Resolver events
// apply in the order they came, but an update followed by another update
// before the serializer got to it is replaced by the newer one: each update
// carries the whole state, so a resolver reporting faster than the channel
// can apply (a thousand etcd endpoints churning) costs one application per
// serializer turn instead of a backlog of stale lists.
class ClientConn::Listener final : public ResolverListener,
                                   public std::enable_shared_from_this<ClientConn::Listener> {
 public:
  explicit Listener(std::weak_ptr<ClientConn> conn) : conn_(std::move(conn)) {}
  void OnUpdate(ResolverState state) override { Add(Event{std::move(state), grpc::Status::OK}); }
  void OnError(grpc::Status status) override {
    Add(Event{std::nullopt, status.ok() ? grpc::Status(grpc::StatusCode::UNKNOWN, "") : status});
  }

 private:
  struct Event {
    std::optional<ResolverState> update;  // empty: an error
    grpc::Status error;
  };

  void Add(Event event) {
    std::shared_ptr<ClientConn> conn = conn_.lock();
    if (conn == nullptr) return;
    {
      std::lock_guard<std::mutex> lock(mu_);
      const bool idle = events_.empty();
      if (!idle && event.update && events_.back().update) {
        events_.back() = std::move(event);
        return;
      }
      events_.push_back(std::move(event));
      if (!idle) return;  // a drain is already on its way
    }
    conn->serializer_->Run([self = shared_from_this(), conn] { self->Drain(*conn); });
  }

  // On the serializer: applies every event queued so far, in order.
  void Drain(ClientConn& conn) {
    std::deque<Event> events;
    {
      std::lock_guard<std::mutex> lock(mu_);
      events.swap(events_);
    }
    for (Event& event : events) {
      if (event.update) {
        conn.OnResolverUpdate(std::move(*event.update));
      } else {
        conn.OnResolverError(event.error);
      }
    }
  }

  std::weak_ptr<ClientConn> conn_;
  std::mutex mu_;
  std::deque<Event> events_;
};

ClientConn::ClientConn(std::string target, std::shared_ptr<grpc::ChannelCredentials> credentials,
                       ChannelOptions options)
    : target_(std::move(target)),
      credentials_(std::move(credentials)),
      options_(std::move(options)),
      serializer_(std::make_shared<WorkSerializer>("lbkit-control")),
      picker_slot_(std::make_shared<QueuePicker>()),
      root_helper_(std::make_unique<RootHelper>(this)) {
  // Take lbkit's permanent reference on the callback completion queue before
  // any subchannel can make a callback-API call (health watches, probes). On
  // platforms where gRPC shares one refcounted queue among all channels, a
  // subchannel's grpc::Channel released from inside one of that queue's own
  // callbacks would otherwise tear the queue down from its own thread
  // (AddressSanitizer caught that as a double free in gRPC).
  SharedCallbackCQ();
  // Calls made before the resolver's first answer follow the default service
  // config's methodConfig already (method_config.h; CreateChannel has
  // checked it, and a bad one never starts the resolver).
  ServiceConfig initial;
  if (ParseServiceConfig(options_.default_service_config, &initial).ok()) {
    method_config_.Apply(initial, target_, [] { return size_t{0}; });
  }
}

ClientConn::~ClientConn() { Shutdown(); }

void ClientConn::Start(std::shared_ptr<Resolver> resolver) {
  SetState(ConnectivityState::kConnecting, grpc::Status::OK);
  serializer_->Run([self = shared_from_this(), resolver = std::move(resolver)] {
    self->resolver_ = resolver;
    self->listener_ = std::make_shared<Listener>(self);
    Trace(TraceFlag::kResolver, self->target_, ": starting resolver");
    resolver->Start(self->listener_);
  });
}

void ClientConn::StartFailed(const grpc::Status& status) {
  serializer_->Run([self = shared_from_this(), status] { self->FailChannel(status); });
}

void ClientConn::FailChannel(const grpc::Status& status) {
  grpc::Status unavailable(grpc::StatusCode::UNAVAILABLE, status.error_message());
  BalancerState state;
  state.state = ConnectivityState::kTransientFailure;
  state.picker = std::make_shared<FailPicker>(unavailable);
  state.status = unavailable;
  PublishState(state);
}

void ClientConn::OnResolverUpdate(ResolverState update) {
  if (shutting_down_) return;
  Trace(TraceFlag::kResolver, target_, ": update with ", update.endpoints.size(), " endpoint(s)",
        update.service_config.empty() ? "" : " and a service config");
  // An address no connection can be made to is dropped (an endpoint left
  // with none goes too), and so is every address of an endpoint with weight
  // 0 (policies are promised weight >= 1), and said so; an update with
  // nothing usable left is a resolver error: the last good endpoints stay, or
  // with none the channel fails with the reason. A kept endpoint keeps its
  // attributes.
  size_t dropped = 0;
  std::string first_bad;
  std::vector<Endpoint> usable;
  for (Endpoint& endpoint : update.endpoints) {
    if (endpoint.attributes.weight == 0) {
      if (dropped == 0) {
        first_bad = "endpoint with weight 0 (weights must be positive), address " +
                    (endpoint.addresses.empty() ? std::string("none")
                                                : "\"" + Shown(endpoint.addresses[0]) + "\"");
      }
      dropped += std::max<size_t>(endpoint.addresses.size(), 1);
      continue;
    }
    Endpoint kept;
    for (std::string& address : endpoint.addresses) {
      grpc::Status status = CheckAddress(address);
      if (status.ok()) {
        kept.addresses.push_back(std::move(address));
      } else if (dropped++ == 0) {
        first_bad = status.error_message();
      }
    }
    kept.attributes = std::move(endpoint.attributes);
    if (!kept.addresses.empty()) usable.push_back(std::move(kept));
  }
  if (dropped > 0) {
    LogLine(target_ + ": resolver gave " + std::to_string(dropped) +
            " unusable address(es), dropped; the first: " + first_bad);
    if (usable.empty()) {
      OnResolverError(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                   "resolver update has no usable address; " + first_bad));
      return;
    }
  }
  update.endpoints = std::move(usable);
  const std::string& json =
      update.service_config.empty() ? options_.default_service_config : update.service_config;
  ServiceConfig parsed;
  grpc::Status status = ParseServiceConfig(json, &parsed);
  if (!status.ok()) {
    // Said once per distinct rejection: a resolver repeating the same bad
    // config on every re-resolution does not flood the log.
    std::string shown = Shown(json);
    if (status.error_message() != rejected_config_error_ || shown != rejected_config_) {
      LogLine(target_ + ": service config rejected: " + status.error_message() +
              (has_config_ ? "; keeping the last good config" : "; no good config yet"));
    }
    rejected_config_error_ = status.error_message();
    rejected_config_ = std::move(shown);
    if (!has_config_) {
      FailChannel(status);
      return;
    }
    parsed = config_;
  } else {
    config_ = parsed;
    has_config_ = true;
    rejected_config_error_.clear();
    rejected_config_.clear();
  }
  // The methodConfig of the config now in force (method_config.h).
  method_config_.Apply(parsed, target_, [this] { return root_helper_->Live().size(); });
  if (parsed.health_check != health_check_ ||
      parsed.health_check_service != health_check_service_) {
    health_check_ = parsed.health_check;
    health_check_service_ = parsed.health_check_service;
    Trace(TraceFlag::kPolicy, target_, ": health checking ",
          health_check_ ? "on for service \"" + health_check_service_ + "\"" : std::string("off"));
    for (const auto& subchannel : root_helper_->Live()) {
      subchannel->SetHealthCheck(health_check_, health_check_service_);
    }
  }
  if (top_ == nullptr || top_name_ != parsed.policy_name) {
    grpc::Status build_status;
    std::unique_ptr<ChildBalancer> child = ChildBalancer::Create(
        root_helper_.get(), parsed.policy_name,
        [this](const BalancerState& state) { PublishState(state); }, &build_status);
    if (child == nullptr) {
      FailChannel(build_status);
      return;
    }
    Trace(TraceFlag::kPolicy, target_, ": using policy ", parsed.policy_name);
    if (top_ != nullptr) {
      // The previous policy's picker may point into it: replace the picker
      // before the policy goes. Calls wait for the new policy's first picker.
      BalancerState switching;
      switching.state = ConnectivityState::kConnecting;
      switching.picker = std::make_shared<QueuePicker>();
      PublishState(switching);
    }
    top_ = std::move(child);  // the previous policy, if any, goes now
    top_name_ = parsed.policy_name;
  }
  has_endpoints_ = !update.endpoints.empty();
  BalancerUpdate balancer_update;
  balancer_update.endpoints = std::move(update.endpoints);
  balancer_update.config = parsed.config;
  grpc::Status policy_status = top_->UpdateResolverState(std::move(balancer_update));
  if (!policy_status.ok()) {
    Trace(TraceFlag::kPolicy, target_, ": ", top_name_,
          " rejected the update: ", policy_status.error_message());
  }
  policy_update_error_ = policy_status.ok() ? "" : policy_status.error_message();
}

void ClientConn::OnResolverError(const grpc::Status& status) {
  if (shutting_down_) return;
  Trace(TraceFlag::kResolver, target_, ": error: ", status.error_message());
  if (top_ != nullptr && has_endpoints_) {
    top_->ResolverError(status);
    return;
  }
  FailChannel(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                           "resolver error for " + target_ + ": " + status.error_message()));
}

void ClientConn::PublishState(const BalancerState& state) {
  std::shared_ptr<Picker> picker = state.picker;
  std::shared_ptr<Picker> previous = picker_slot_.Publish(picker);
  {
    // From here on a call that read the old picker and finds the queue's
    // generation changed picks again instead of queueing behind this pass.
    std::lock_guard<std::mutex> lock(queue_mu_);
    generation_.fetch_add(1, std::memory_order_acq_rel);
  }
  current_picker_ = picker;
  PickQueued(*picker);
  SetState(state.state, state.status);
  previous.reset();  // the old picker (and subchannels only it held) go here
}

void ClientConn::PickQueued(const Picker& picker) {
  std::deque<std::shared_ptr<QueuedCall>> waiting;
  {
    std::lock_guard<std::mutex> lock(queue_mu_);
    // A call that read the picker (or a connection's state) before this pass
    // and queues after it must pick again, as after a publish.
    generation_.fetch_add(1, std::memory_order_acq_rel);
    if (queue_.empty()) return;
    waiting.swap(queue_);
  }
  // Outside the lock: a picker may take its own locks, and Snapshot() or a
  // new call must never wait behind a pass over the queue.
  std::deque<std::shared_ptr<QueuedCall>> still;
  for (std::shared_ptr<QueuedCall>& call : waiting) {
    if (call->settled()) continue;  // ended while queued (deadline, cancel)
    bool threw = false;
    PickResult result = GuardedPick(picker, call->args(), &threw);
    if (result.kind() == PickResult::Kind::kComplete && result.subchannel() != nullptr) {
      // Through any ForwardingSubchannel to the connection it wraps.
      auto* subchannel =
          static_cast<SubchannelImpl*>(SubchannelAccess::Innermost(*result.subchannel()));
      if (subchannel->connected()) {
        if (result.metadata() != nullptr) {
          grpc::Status checked = CheckPickMetadata(*result.metadata());
          if (!checked.ok()) {
            bool failed = call->Fail(checked);
            RunDone(result.on_done(),
                    CallDoneInfo(failed ? checked
                                        : grpc::Status(grpc::StatusCode::CANCELLED,
                                                       "call ended while queued")));
            continue;
          }
        }
        Trace(TraceFlag::kPick, call->args().method, " -> ", subchannel->address(),
              " (was queued)");
        // The relay adds the attached metadata to the real call's context.
        call->Place(subchannel->shared_from_this(), std::move(result.on_done()),
                    result.TakeMetadata());
        continue;
      }
      // The picker is older than the connection's failure: wait for the next.
      RunDone(result.on_done(), CallDoneInfo(PickNotUsed(*subchannel)));
    } else if (result.kind() == PickResult::Kind::kFail && (!call->wait_for_ready() || threw) &&
               !result.status().ok()) {
      call->Fail(result.status());
      continue;
    }
    still.push_back(std::move(call));
  }
  bool closed;
  {
    std::lock_guard<std::mutex> lock(queue_mu_);
    closed = queue_closed_;
    if (!closed) {
      // Calls queued during the pass came later: they go behind.
      for (auto& call : queue_) still.push_back(std::move(call));
      queue_.swap(still);
      purge_at_ = std::max<size_t>(64, 2 * queue_.size());
    }
  }
  // Shutdown() ran during the pass and found the queue empty: its calls are
  // these.
  if (closed) {
    for (const auto& call : still) call->Fail(ShutdownStatus());
  }
}

void ClientConn::SetState(ConnectivityState state, const grpc::Status& error) {
  std::shared_ptr<grpc::Channel> fired;
  {
    std::lock_guard<std::mutex> lock(state_mu_);
    last_error_ = error.ok() ? "" : error.error_message();
    if (state == state_.load()) return;
    Trace(TraceFlag::kPolicy, target_, ": channel ", ToString(state_.load()), " -> ",
          ToString(state), error.ok() ? "" : " (" + error.error_message() + ")");
    state_.store(state);
    fired = std::move(signal_);
    signal_ = nullptr;
  }
  state_cv_.notify_all();
  if (fired != nullptr) fired->GetState(/*try_to_connect=*/true);  // leaves IDLE: wakes watches
}

std::shared_ptr<grpc::Channel> ClientConn::NewSignalChannel() {
  // Never used for calls; a connection attempt (only made once the state has
  // changed) fails at once on a socket path that does not exist.
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel("unix:/nonexistent/lbkit-state-signal",
                                   grpc::InsecureChannelCredentials(), args);
}

void ClientConn::NotifyOnStateChange(grpc_connectivity_state last_observed, gpr_timespec deadline,
                                     grpc::CompletionQueue* cq, void* tag) {
  std::shared_ptr<grpc::Channel> channel;
  {
    std::lock_guard<std::mutex> lock(state_mu_);
    if (ToGrpc(state_.load()) == last_observed) {
      if (signal_ == nullptr) signal_ = NewSignalChannel();
      signal_->NotifyOnStateChange(GRPC_CHANNEL_IDLE, deadline, cq, tag);
      return;
    }
    channel = NewSignalChannel();
  }
  channel->GetState(/*try_to_connect=*/true);  // already changed: complete at once
  channel->NotifyOnStateChange(GRPC_CHANNEL_IDLE, deadline, cq, tag);
}

bool ClientConn::WaitForStateChange(grpc_connectivity_state last_observed, gpr_timespec deadline) {
  auto until = SteadyDeadline(deadline);
  std::unique_lock<std::mutex> lock(state_mu_);
  auto changed = [&] { return ToGrpc(state_.load()) != last_observed; };
  if (until == std::chrono::steady_clock::time_point::max()) {
    state_cv_.wait(lock, changed);
    return true;
  }
  return state_cv_.wait_until(lock, until, changed);
}

grpc_connectivity_state ClientConn::GetState(bool try_to_connect) {
  ConnectivityState state = state_.load();
  if (state == ConnectivityState::kIdle && try_to_connect) {
    serializer_->Run([self = shared_from_this()] {
      if (self->top_ != nullptr) self->top_->ExitIdle();
    });
  }
  return ToGrpc(state);
}

void* ClientConn::RegisterMethod(const char* method) {
  std::lock_guard<std::mutex> lock(methods_mu_);
  std::unique_ptr<MethodInfo>& info = methods_[method];
  if (info == nullptr) info.reset(new MethodInfo{method, methods_.size() - 1});
  return info.get();
}

grpc::internal::Call ClientConn::CreateCall(const grpc::internal::RpcMethod& method,
                                            grpc::ClientContext* context,
                                            grpc::CompletionQueue* cq) {
  const auto* method_info = static_cast<const MethodInfo*>(method.channel_tag());
  PickArgs args;
  // The registered name is the same string with its length known: no strlen.
  args.method = method_info != nullptr ? std::string_view(method_info->name)
                                       : std::string_view(method.name());
  // methodConfig timeout and waitForReady (method_config.h): before anything
  // below reads the deadline or wait-for-ready, the queue and relay included.
  method_config_.OnCall(args.method, context);
  args.metadata = &StubAdapter::SendMetadata(*context);
  const bool wait_for_ready = StubAdapter::WaitForReady(*context);
  args.deadline = context->deadline();
  args.wait_for_ready = wait_for_ready;

  uint64_t generation = generation_.load(std::memory_order_acquire);
  std::optional<grpc::Status> failure;  // nothing to build on the fast path
  bool bad_metadata = false;
  {
    PickerSlot::ReadGuard picker = picker_slot_.Read();
    bool threw = false;
    PickResult result = GuardedPick(*picker.get(), args, &threw);
    switch (result.kind()) {
      case PickResult::Kind::kComplete: {
        if (result.subchannel() == nullptr) {
          failure.emplace(grpc::StatusCode::INTERNAL,
                          "lbkit: picker completed a pick without a subchannel");
          break;
        }
        // Through any ForwardingSubchannel to the connection it wraps.
        auto* subchannel =
            static_cast<SubchannelImpl*>(SubchannelAccess::Innermost(*result.subchannel()));
        if (subchannel->connected()) {
          if (result.metadata() != nullptr) {
            grpc::Status checked = CheckPickMetadata(*result.metadata());
            if (!checked.ok()) {
              RunDone(result.on_done(), CallDoneInfo(checked));
              failure.emplace(std::move(checked));
              bad_metadata = true;
              break;
            }
            // Before the call exists: every stub sends the context's map
            // with its first batch, after CreateCall.
            for (const auto& [key, value] : *result.metadata()) context->AddMetadata(key, value);
          }
          if (TraceEnabled(TraceFlag::kPick)) {
            Trace(TraceFlag::kPick, args.method, " -> ", subchannel->address());
          }
          // The guard keeps the picker, and so the subchannel, alive here.
          return subchannel->CreateCall(method, method_info, context, cq,
                                        std::move(result.on_done()));
        }
        // gRPC has reported this connection gone, and the policy has not yet
        // published a picker without it: queue for that picker.
        RunDone(result.on_done(), CallDoneInfo(PickNotUsed(*subchannel)));
        break;
      }
      case PickResult::Kind::kFail:
        if (!wait_for_ready || threw) failure = result.status();
        break;
      case PickResult::Kind::kQueue:
        break;
    }
  }
  if (failure.has_value() && !failure->ok()) {
    if (!bad_metadata && DeadlinePassed(context->raw_deadline())) {
      return ExpiredCall(method, context, cq);
    }
    Trace(TraceFlag::kPick, args.method, " failed: ", failure->error_message());
    return FailedCall(*failure, method, context, cq);
  }
  return QueueCall(method, context, cq, wait_for_ready, generation);
}

grpc::internal::Call ClientConn::QueueCall(const grpc::internal::RpcMethod& method,
                                           grpc::ClientContext* context, grpc::CompletionQueue* cq,
                                           bool wait_for_ready, uint64_t generation) {
  if (DeadlinePassed(context->raw_deadline())) return ExpiredCall(method, context, cq);
  auto call = std::make_shared<QueuedCall>(method, *context, wait_for_ready);
  {
    std::unique_lock<std::mutex> lock(queue_mu_);
    if (queue_closed_) {
      lock.unlock();
      return FailedCall(ShutdownStatus(), method, context, cq);
    }
    if (generation_.load(std::memory_order_acquire) != generation) {
      // A picker was published after ours was read: pick again with it.
      lock.unlock();
      return CreateCall(method, context, cq);
    }
    if (queue_.size() >= purge_at_) {
      queue_.erase(std::remove_if(queue_.begin(), queue_.end(),
                                  [](const auto& queued) { return queued->settled(); }),
                   queue_.end());
      purge_at_ = std::max<size_t>(64, 2 * queue_.size());
    }
    queue_.push_back(call);
  }
  Trace(TraceFlag::kPick, call->args().method, " queued");
  return CreateRelayedCall(call, method, context, cq);
}

grpc::internal::Call ClientConn::ExpiredCall(const grpc::internal::RpcMethod& method,
                                             grpc::ClientContext* context,
                                             grpc::CompletionQueue* cq) {
  return FailedCall(grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                                 "deadline exceeded before the call was placed (channel " +
                                     std::string(ToString(state_.load())) + ")"),
                    method, context, cq);
}

grpc::internal::Call ClientConn::FailedCall(const grpc::Status& status,
                                            const grpc::internal::RpcMethod& method,
                                            grpc::ClientContext* context,
                                            grpc::CompletionQueue* cq) {
  grpc::internal::RpcMethod unregistered(method.name(), method.suffix_for_stats(),
                                         method.method_type());
  std::shared_ptr<grpc::Channel> lame = LameChannel(status);
  return StubAdapter::CreateCall(lame.get(), unregistered, context, cq);
}

void ClientConn::Shutdown() {
  if (shutting_down_.exchange(true)) return;
  std::deque<std::shared_ptr<QueuedCall>> queued;
  {
    std::lock_guard<std::mutex> lock(queue_mu_);
    queue_closed_ = true;
    queued.swap(queue_);
  }
  for (const auto& call : queued) call->Fail(ShutdownStatus());
  // The serializer may be gone already if the channel is being destroyed
  // after a Shutdown; then there is nothing left to release.
  std::weak_ptr<ClientConn> weak = weak_from_this();
  if (std::shared_ptr<ClientConn> self = weak.lock()) {
    serializer_->Run([self] { self->ShutdownOnSerializer(); });
  }
  serializer_->Shutdown();
}

void ClientConn::ShutdownOnSerializer() {
  if (resolver_ != nullptr) resolver_->Shutdown();
  // Replace the picker first: it may point into the policy.
  BalancerState state;
  state.state = ConnectivityState::kShutdown;
  state.picker = std::make_shared<FailPicker>(ShutdownStatus());
  state.status = ShutdownStatus();
  PublishState(state);
  top_.reset();
  resolver_.reset();
  listener_.reset();
}

ChannelSnapshot ClientConn::Snapshot() {
  auto build = [this] {
    ChannelSnapshot snapshot;
    snapshot.target = target_;
    snapshot.policy = top_name_;
    {
      std::lock_guard<std::mutex> lock(state_mu_);
      snapshot.state = state_.load();
      snapshot.last_error = last_error_;
    }
    snapshot.rejected_config_error = rejected_config_error_;
    snapshot.rejected_config = rejected_config_;
    snapshot.policy_update_error = policy_update_error_;
    snapshot.config_warnings = method_config_.warnings();
    {
      std::lock_guard<std::mutex> lock(queue_mu_);
      snapshot.queued_calls = static_cast<size_t>(std::count_if(
          queue_.begin(), queue_.end(), [](const auto& queued) { return !queued->settled(); }));
    }
    for (const auto& subchannel : root_helper_->Live()) {
      snapshot.subchannels.push_back({subchannel->address(), subchannel->state(),
                                      subchannel->last_error().error_message(),
                                      subchannel->calls_started(), subchannel->health()});
    }
    return snapshot;
  };
  if (serializer_->IsCurrent()) return build();
  auto promise = std::make_shared<std::promise<ChannelSnapshot>>();
  std::future<ChannelSnapshot> future = promise->get_future();
  if (!serializer_->Run([promise, build] { promise->set_value(build()); })) {
    ChannelSnapshot snapshot;
    snapshot.target = target_;
    snapshot.policy = top_name_;
    snapshot.state = ConnectivityState::kShutdown;
    return snapshot;
  }
  return future.get();
}

namespace {

// What CreateChannel hands out: the grpc::ChannelInterface stubs drive.
class LbChannel final : public Channel {
 public:
  explicit LbChannel(std::shared_ptr<ClientConn> conn) : conn_(std::move(conn)) {}
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
    return conn_->CreateCall(method, context, cq);
  }
  // Calls created above carry their subchannel's grpc::Channel as their hook,
  // so gRPC sends their ops there; this is only a fallback.
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
}  // namespace internal

std::shared_ptr<Channel> CreateChannel(const std::string& target,
                                       const std::shared_ptr<grpc::ChannelCredentials>& credentials,
                                       const ChannelOptions& options, grpc::Status* status) {
  grpc::Status result;
  std::shared_ptr<Resolver> resolver = options.resolver;
  Target parsed;
  if (credentials == nullptr) {
    result = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "lbkit::CreateChannel: credentials must not be null");
  } else if (resolver == nullptr) {
    result = ParseTarget(target, &parsed);
    if (result.ok()) {
      std::shared_ptr<const ResolverFactory> factory = FindResolverFactory(parsed.scheme);
      if (factory == nullptr) {
        std::string schemes;
        for (const std::string& scheme : RegisteredResolverSchemes()) {
          schemes += (schemes.empty() ? "" : ", ") + scheme;
        }
        result = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                              "unknown scheme \"" + parsed.scheme + "\" in target \"" + target +
                                  "\" (registered: " + schemes +
                                  "; for a list of addresses use \"static:///host:port,...\")");
      } else {
        result = factory->Create(parsed, &resolver);
        if (result.ok() && resolver == nullptr) {
          result = grpc::Status(grpc::StatusCode::INTERNAL,
                                "resolver factory for \"" + parsed.scheme + "\" built nothing");
        }
      }
    }
  }
  if (result.ok()) {
    // As gRPC's client channel does, an invalid default service config makes
    // the channel unusable whatever the resolver later supplies (C-core's
    // channel creation fails and it hands out a lame channel).
    ServiceConfig unused;
    grpc::Status config = ParseServiceConfig(options.default_service_config, &unused);
    if (!config.ok()) {
      result = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                            "ChannelOptions::default_service_config: " + config.error_message());
    }
  }
  auto conn = std::make_shared<internal::ClientConn>(
      target, credentials ? credentials : grpc::InsecureChannelCredentials(), options);
  if (result.ok()) {
    conn->Start(std::move(resolver));
  } else {
    internal::Trace(internal::TraceFlag::kResolver, result.error_message());
    conn->StartFailed(result);
  }
  if (status != nullptr) *status = result;
  return std::make_shared<internal::LbChannel>(std::move(conn));
}

}  // namespace lbkit
