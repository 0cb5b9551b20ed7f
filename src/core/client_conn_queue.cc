// ClientConn's queue: calls no picker could place yet wait here, in arrival
// order, and are offered to each new picker (and after each connectivity
// report) until they are placed, fail, or end (design.md, rule 5;
// docs/queued-calls.md).

#include <algorithm>
#include <deque>
#include <memory>
#include <mutex>
#include <utility>

#include "core/call_info.h"
#include "core/client_conn.h"
#include "core/guarded_pick.h"
#include "core/trace.h"

namespace lbkit {
namespace internal {

void ClientConn::QueueCall(const PickArgs& args, grpc::ClientContext* context, uint64_t generation,
                           CallRoute* route) {
  if (DeadlinePassed(context->raw_deadline())) {
    route->kind = CallRoute::Kind::kFail;
    route->status = ExpiredStatus();
    return;
  }
  auto call = std::make_shared<QueuedCall>(args, *context);
  {
    std::unique_lock<std::mutex> lock(queue_mu_);
    if (queue_closed_) {
      lock.unlock();
      route->kind = CallRoute::Kind::kFail;
      route->status = ShutdownStatus();
      return;
    }
    if (generation_.load(std::memory_order_acquire) != generation) {
      // A picker was published after ours was read: pick again with it.
      lock.unlock();
      RouteCall(args, context, route);
      return;
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
  // The stub adapter hands the stub a relayed call for it.
  route->kind = CallRoute::Kind::kQueue;
  route->queued = std::move(call);
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

}  // namespace internal
}  // namespace lbkit
