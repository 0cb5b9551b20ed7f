// ClientConn: construction, shutdown and snapshots (client_conn.h lists
// where the rest of it lives).

#include "core/client_conn.h"

#include <algorithm>
#include <deque>
#include <memory>
#include <mutex>
#include <utility>

#include "core/client_conn_helper.h"
#include "core/trace.h"

namespace lbkit {
namespace internal {

const grpc::Status& ClientConn::ShutdownStatus() {
  static const grpc::Status* status =
      new grpc::Status(grpc::StatusCode::UNAVAILABLE, "lbkit channel shut down");
  return *status;
}

ClientConn::ClientConn(std::string target, std::shared_ptr<grpc::ChannelCredentials> credentials,
                       ChannelOptions options)
    : target_(std::move(target)),
      credentials_(std::move(credentials)),
      options_(std::move(options)),
      serializer_(std::make_shared<WorkSerializer>()),
      picker_slot_(std::make_shared<QueuePicker>()),
      root_helper_(std::make_unique<RootHelper>(this)) {
  // Calls made before the resolver's first answer follow the default service
  // config's methodConfig already (method_config.h; CreateChannel has
  // checked it, and a bad one never starts the resolver).
  ServiceConfig initial;
  if (ParseServiceConfig(options_.default_service_config, &initial).ok()) {
    method_config_.Apply(initial, target_, [] { return size_t{0}; });
  }
}

ClientConn::~ClientConn() { Shutdown(); }

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
  ChannelSnapshot snapshot;
  if (!serializer_->RunAndWait([&] { snapshot = build(); })) {
    snapshot.target = target_;
    snapshot.policy = top_name_;
    snapshot.state = ConnectivityState::kShutdown;
  }
  return snapshot;
}

}  // namespace internal
}  // namespace lbkit
