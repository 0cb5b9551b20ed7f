// ClientConn, from the resolver to the policy (design.md's flow, first
// step): starting the resolver, the listener that brings its reports onto the
// serializer, and what an update does: unusable addresses dropped, the
// service config parsed (a bad one keeps the last good one), the policy
// chosen from the registry and handed the endpoints.

#include <algorithm>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>

#include "core/address.h"
#include "core/client_conn.h"
#include "core/client_conn_helper.h"
#include "core/shown_text.h"
#include "core/trace.h"

namespace lbkit {
namespace internal {

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

}  // namespace internal
}  // namespace lbkit
