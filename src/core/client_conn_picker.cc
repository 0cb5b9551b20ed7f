// ClientConn, from the policy to each call: publishing the policy's picker,
// and routing each call a stub starts with the current one (design.md's
// flow, last step; rule 2). RouteCall is the per-call hot path
// (docs/performance.md); the stub adapter makes the gRPC call from its
// answer.

#include <optional>
#include <string_view>
#include <utility>

#include <grpc/support/time.h>

#include "core/call_info.h"
#include "core/client_conn.h"
#include "core/guarded_pick.h"
#include "core/trace.h"

namespace lbkit {
namespace internal {

grpc::Status ClientConn::PickNotUsed(const SubchannelImpl& subchannel) {
  return grpc::Status(grpc::StatusCode::CANCELLED, "lbkit: pick not used: connection to " +
                                                       subchannel.address() +
                                                       " is not READY; nothing was sent");
}

bool ClientConn::DeadlinePassed(gpr_timespec deadline) {
  if (deadline.clock_type == GPR_TIMESPAN)
    return gpr_time_cmp(deadline, gpr_time_0(GPR_TIMESPAN)) <= 0;
  if (gpr_time_cmp(deadline, gpr_inf_future(deadline.clock_type)) == 0) return false;
  return gpr_time_cmp(deadline, gpr_now(deadline.clock_type)) <= 0;
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

MethodInfo* ClientConn::RegisterMethod(const char* method) {
  std::lock_guard<std::mutex> lock(methods_mu_);
  std::unique_ptr<MethodInfo>& info = methods_[method];
  if (info == nullptr) info.reset(new MethodInfo{method, methods_.size() - 1});
  return info.get();
}

void ClientConn::RouteCall(PickArgs args, grpc::ClientContext* context, CallRoute* route) {
  args.deadline = context->deadline();
  const bool wait_for_ready = args.wait_for_ready;

  uint64_t generation = generation_.load(std::memory_order_acquire);
  std::optional<grpc::Status>& failure = route->status;  // nothing to build on the fast path
  bool bad_metadata = false;
  {
    route->picker.emplace(picker_slot_.Read());
    bool threw = false;
    PickResult result = GuardedPick(*route->picker->get(), args, &threw);
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
          // route->picker keeps the picker, and so the subchannel, alive
          // until the stub adapter has created the call.
          route->kind = CallRoute::Kind::kPlace;
          route->subchannel = subchannel;
          route->on_done = std::move(result.on_done());
          return;
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
    route->picker.reset();
  }
  if (failure.has_value() && !failure->ok()) {
    route->kind = CallRoute::Kind::kFail;
    if (!bad_metadata && DeadlinePassed(context->raw_deadline())) {
      failure = ExpiredStatus();
      return;
    }
    Trace(TraceFlag::kPick, args.method, " failed: ", failure->error_message());
    return;
  }
  failure.reset();
  QueueCall(args, context, generation, route);
}

grpc::Status ClientConn::ExpiredStatus() const {
  return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                      "deadline exceeded before the call was placed (channel " +
                          std::string(ToString(state_.load())) + ")");
}

}  // namespace internal
}  // namespace lbkit
