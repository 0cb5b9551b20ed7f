#include "core/connectivity_watcher.h"

#include <mutex>
#include <unordered_set>

#include <grpc/support/time.h>

#include "core/io_loop.h"

namespace lbkit {
namespace internal {
namespace {

class WatchOp;

// In-flight watches stay reachable from here, so leak checkers do not report
// the ones still armed when the process exits.
std::mutex& OpsMu() {
  static auto* mu = new std::mutex();
  return *mu;
}
std::unordered_set<WatchOp*>& Ops() {
  static auto* ops = new std::unordered_set<WatchOp*>();
  return *ops;
}

class WatchOp final : public IoLoop::Tag {
 public:
  WatchOp(const std::shared_ptr<grpc::Channel>& channel, grpc_connectivity_state last_seen,
          ConnectivityWatcher::Callback on_change)
      : channel_(channel), last_seen_(last_seen), on_change_(std::move(on_change)) {
    std::lock_guard<std::mutex> lock(OpsMu());
    Ops().insert(this);
  }

  void Arm(grpc::Channel* channel) {
    // No deadline: the watch ends with a state change, and destroying the
    // channel is one (to SHUTDOWN).
    channel->NotifyOnStateChange(last_seen_, gpr_inf_future(GPR_CLOCK_MONOTONIC),
                                 IoLoop::Get().cq(), this);
  }

  void Complete(bool /*ok*/) override {
    std::shared_ptr<grpc::Channel> channel = channel_.lock();
    bool keep = channel != nullptr;
    if (keep) {
      // Reported even when it equals the last state seen: the watch fired,
      // so the state changed and changed back (READY -> IDLE -> READY is a
      // new connection) before it could be read.
      grpc_connectivity_state state = channel->GetState(false);
      last_seen_ = state;
      keep = on_change_(state) && state != GRPC_CHANNEL_SHUTDOWN;
    }
    if (keep) {
      Arm(channel.get());
      return;
    }
    {
      std::lock_guard<std::mutex> lock(OpsMu());
      Ops().erase(this);
    }
    delete this;
  }

 private:
  std::weak_ptr<grpc::Channel> channel_;
  grpc_connectivity_state last_seen_;
  ConnectivityWatcher::Callback on_change_;
};

}  // namespace

void ConnectivityWatcher::Watch(const std::shared_ptr<grpc::Channel>& channel,
                                grpc_connectivity_state last_seen, Callback on_change) {
  (new WatchOp(channel, last_seen, std::move(on_change)))->Arm(channel.get());
}

}  // namespace internal
}  // namespace lbkit
