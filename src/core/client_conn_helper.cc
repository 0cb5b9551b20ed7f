#include "core/client_conn_helper.h"

#include <utility>

#include "core/trace.h"
#include "core/work_serializer.h"

namespace lbkit {
namespace internal {
namespace {

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

std::shared_ptr<Subchannel> ClientConn::RootHelper::CreateSubchannel(
    const std::string& address, SubchannelStateListener listener) {
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

void ClientConn::RootHelper::RequestReresolution() {
  Trace(TraceFlag::kResolver, conn_->target_, ": re-resolution requested");
  if (conn_->resolver_ != nullptr) conn_->resolver_->RequestReresolution();
}

std::unique_ptr<Timer> ClientConn::RootHelper::StartTimer(std::chrono::milliseconds delay,
                                                          std::function<void()> fn) {
  uint64_t id = conn_->serializer_->RunAfter(delay, std::move(fn));
  return std::make_unique<SerializerTimer>(conn_->serializer_, id);
}

void ClientConn::RootHelper::Post(std::function<void()> fn) {
  conn_->serializer_->Run(std::move(fn));
}

std::vector<std::shared_ptr<SubchannelImpl>> ClientConn::RootHelper::Live() const {
  std::vector<std::shared_ptr<SubchannelImpl>> live;
  for (const auto& weak : subchannels_) {
    std::shared_ptr<SubchannelImpl> sc = weak.lock();
    if (sc != nullptr && !sc->is_shutdown()) live.push_back(std::move(sc));
  }
  return live;
}

}  // namespace internal
}  // namespace lbkit
