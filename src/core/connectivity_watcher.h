// ConnectivityWatcher: follows the connectivity state of grpc::Channels
// through gRPC's public NotifyOnStateChange, on one process-wide thread.
#ifndef LBKIT_SRC_CORE_CONNECTIVITY_WATCHER_H_
#define LBKIT_SRC_CORE_CONNECTIVITY_WATCHER_H_

#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_set>

#include <grpcpp/channel.h>
#include <grpcpp/completion_queue.h>

namespace lbkit {
namespace internal {

class ConnectivityWatcher {
 public:
  // Returns false to stop watching.
  using Callback = std::function<bool(grpc_connectivity_state)>;

  // The process-wide watcher (created on first use, never destroyed).
  static ConnectivityWatcher& Get();

  // Calls `on_change` on the watcher thread with every state `channel` takes
  // after `last_seen`, until it returns false, the state is SHUTDOWN, or the
  // channel is destroyed. Holds no reference that keeps `channel` alive.
  void Watch(const std::shared_ptr<grpc::Channel>& channel, grpc_connectivity_state last_seen,
             Callback on_change);

 private:
  struct Op;
  ConnectivityWatcher();
  void Loop();
  void Arm(grpc::Channel* channel, Op* op);

  grpc::CompletionQueue cq_;
  std::mutex mu_;
  std::unordered_set<Op*> ops_;  // in flight: reachable, for leak checkers
  std::thread thread_;
};

}  // namespace internal
}  // namespace lbkit

#endif  // LBKIT_SRC_CORE_CONNECTIVITY_WATCHER_H_
