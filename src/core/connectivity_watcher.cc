#include "core/connectivity_watcher.h"

#include <pthread.h>

#include <grpc/support/time.h>

namespace lbkit {
namespace internal {

struct ConnectivityWatcher::Op {
  std::weak_ptr<grpc::Channel> channel;
  grpc_connectivity_state last_seen;
  Callback on_change;
};

ConnectivityWatcher& ConnectivityWatcher::Get() {
  // Never destroyed: watches may be in flight until the process exits.
  static ConnectivityWatcher* watcher = new ConnectivityWatcher();
  return *watcher;
}

ConnectivityWatcher::ConnectivityWatcher() {
  thread_ = std::thread([this] { Loop(); });
}

void ConnectivityWatcher::Watch(const std::shared_ptr<grpc::Channel>& channel,
                                grpc_connectivity_state last_seen, Callback on_change) {
  Op* op = new Op{channel, last_seen, std::move(on_change)};
  {
    std::lock_guard<std::mutex> lock(mu_);
    ops_.insert(op);
  }
  Arm(channel.get(), op);
}

void ConnectivityWatcher::Arm(grpc::Channel* channel, Op* op) {
  // No deadline: the watch ends with a state change, and destroying the
  // channel is one (to SHUTDOWN).
  channel->NotifyOnStateChange(op->last_seen, gpr_inf_future(GPR_CLOCK_MONOTONIC), &cq_, op);
}

void ConnectivityWatcher::Loop() {
  pthread_setname_np(pthread_self(), "lbkit-watch");
  void* tag;
  bool ok;
  while (cq_.Next(&tag, &ok)) {
    Op* op = static_cast<Op*>(tag);
    std::shared_ptr<grpc::Channel> channel = op->channel.lock();
    bool keep = channel != nullptr;
    if (keep) {
      grpc_connectivity_state state = channel->GetState(false);
      if (state != op->last_seen) {
        op->last_seen = state;
        keep = op->on_change(state) && state != GRPC_CHANNEL_SHUTDOWN;
      }
    }
    if (keep) {
      Arm(channel.get(), op);
    } else {
      {
        std::lock_guard<std::mutex> lock(mu_);
        ops_.erase(op);
      }
      delete op;
    }
  }
}

}  // namespace internal
}  // namespace lbkit
