// ClientConn's connectivity state as grpc::ChannelInterface reports it:
// GetState, and the NotifyOnStateChange and WaitForStateChange watches.

#include <chrono>
#include <memory>
#include <mutex>

#include <grpc/support/time.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>

#include "core/client_conn.h"
#include "core/connectivity.h"
#include "core/trace.h"

namespace lbkit {
namespace internal {
namespace {

// A deadline as a steady-clock time point; max() for none.
std::chrono::steady_clock::time_point SteadyDeadline(gpr_timespec deadline) {
  if (gpr_time_cmp(deadline, gpr_inf_future(deadline.clock_type)) == 0) {
    return std::chrono::steady_clock::time_point::max();
  }
  // Any clock, relative (GPR_TIMESPAN) included, as gRPC itself accepts.
  deadline = gpr_convert_clock_type(deadline, GPR_CLOCK_MONOTONIC);
  gpr_timespec remaining = gpr_time_sub(deadline, gpr_now(GPR_CLOCK_MONOTONIC));
  auto nanos = std::chrono::seconds(remaining.tv_sec) + std::chrono::nanoseconds(remaining.tv_nsec);
  return std::chrono::steady_clock::now() +
         std::chrono::duration_cast<std::chrono::steady_clock::duration>(nanos);
}

}  // namespace

void ClientConn::SetState(ConnectivityState state, const grpc::Status& error) {
  std::shared_ptr<grpc::Channel> fired;
  {
    std::lock_guard<std::mutex> lock(state_mu_);
    last_error_ = error.ok() ? "" : error.error_message();
    if (state == state_.load()) return;
    Trace(TraceFlag::kPolicy, target_, ": channel ", ToString(state_.load()), " -> ",
          ToString(state), error.ok() ? "" : " (" + error.error_message() + ")");
    state_.store(state);
    fired = std::move(signal_);
    signal_ = nullptr;
  }
  state_cv_.notify_all();
  if (fired != nullptr) fired->GetState(/*try_to_connect=*/true);  // leaves IDLE: wakes watches
}

std::shared_ptr<grpc::Channel> ClientConn::NewSignalChannel() {
  // Never used for calls; a connection attempt (only made once the state has
  // changed) fails at once on a socket path that does not exist.
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel("unix:/nonexistent/lbkit-state-signal",
                                   grpc::InsecureChannelCredentials(), args);
}

void ClientConn::NotifyOnStateChange(grpc_connectivity_state last_observed, gpr_timespec deadline,
                                     grpc::CompletionQueue* cq, void* tag) {
  std::shared_ptr<grpc::Channel> channel;
  {
    std::lock_guard<std::mutex> lock(state_mu_);
    if (ToGrpc(state_.load()) == last_observed) {
      if (signal_ == nullptr) signal_ = NewSignalChannel();
      signal_->NotifyOnStateChange(GRPC_CHANNEL_IDLE, deadline, cq, tag);
      return;
    }
    channel = NewSignalChannel();
  }
  channel->GetState(/*try_to_connect=*/true);  // already changed: complete at once
  channel->NotifyOnStateChange(GRPC_CHANNEL_IDLE, deadline, cq, tag);
}

bool ClientConn::WaitForStateChange(grpc_connectivity_state last_observed, gpr_timespec deadline) {
  auto until = SteadyDeadline(deadline);
  std::unique_lock<std::mutex> lock(state_mu_);
  auto changed = [&] { return ToGrpc(state_.load()) != last_observed; };
  if (until == std::chrono::steady_clock::time_point::max()) {
    state_cv_.wait(lock, changed);
    return true;
  }
  return state_cv_.wait_until(lock, until, changed);
}

grpc_connectivity_state ClientConn::GetState(bool try_to_connect) {
  ConnectivityState state = state_.load();
  if (state == ConnectivityState::kIdle && try_to_connect) {
    serializer_->Run([self = shared_from_this()] {
      if (self->top_ != nullptr) self->top_->ExitIdle();
    });
  }
  return ToGrpc(state);
}

}  // namespace internal
}  // namespace lbkit
