// ConnectivityWatcher: follows the connectivity state of grpc::Channels
// through gRPC's public NotifyOnStateChange, on lbkit's IoLoop thread.
#ifndef LBKIT_SRC_CORE_CONNECTIVITY_WATCHER_H_
#define LBKIT_SRC_CORE_CONNECTIVITY_WATCHER_H_

#include <functional>
#include <memory>

#include <grpcpp/channel.h>

namespace lbkit {
namespace internal {

class ConnectivityWatcher {
 public:
  // Returns false to stop watching.
  using Callback = std::function<bool(grpc_connectivity_state)>;

  // Calls `on_change` on the IoLoop thread with the channel's state each time
  // gRPC reports a change from the last state seen (starting from
  // `last_seen`), until it returns false, the state is SHUTDOWN, or the
  // channel is destroyed. gRPC reports the current state when a watch fires,
  // so a short-lived state can be skipped (IDLE -> READY without the
  // CONNECTING between), and a state can be reported twice in a row (it
  // changed and changed back). Holds no reference that keeps `channel` alive.
  static void Watch(const std::shared_ptr<grpc::Channel>& channel,
                    grpc_connectivity_state last_seen, Callback on_change);
};

}  // namespace internal
}  // namespace lbkit

#endif  // LBKIT_SRC_CORE_CONNECTIVITY_WATCHER_H_
