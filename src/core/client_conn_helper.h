// ClientConn's root helper: the Helper of the top balancer's ChildBalancer,
// where the policy's subchannels, timers and posts meet the channel (the
// "creates Subchannels" step of design.md's flow). Serializer only.
#ifndef LBKIT_SRC_CORE_CLIENT_CONN_HELPER_H_
#define LBKIT_SRC_CORE_CLIENT_CONN_HELPER_H_

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/client_conn.h"
#include "core/subchannel.h"
#include "lbkit/balancer.h"

namespace lbkit {
namespace internal {
// The helper of the top balancer's ChildBalancer: where subchannels, timers
// and posts meet the channel.
class ClientConn::RootHelper final : public Helper {
 public:
  explicit RootHelper(ClientConn* conn) : conn_(conn) {}

  std::shared_ptr<Subchannel> CreateSubchannel(const std::string& address,
                                               SubchannelStateListener listener) override;
  void UpdateState(BalancerState state) override { conn_->PublishState(state); }
  void RequestReresolution() override;
  std::unique_ptr<Timer> StartTimer(std::chrono::milliseconds delay,
                                    std::function<void()> fn) override;
  void Post(std::function<void()> fn) override;
  const std::string& target() const override { return conn_->target_; }

  // The subchannels not yet shut down, in creation order.
  std::vector<std::shared_ptr<SubchannelImpl>> Live() const;

 private:
  ClientConn* conn_;
  std::vector<std::weak_ptr<SubchannelImpl>> subchannels_;
  size_t live_hint_ = 0;
};

}  // namespace internal
}  // namespace lbkit

#endif  // LBKIT_SRC_CORE_CLIENT_CONN_HELPER_H_
