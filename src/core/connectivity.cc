#include "core/connectivity.h"

#include <utility>

#include "lbkit/connectivity.h"

namespace lbkit {

const char* ToString(ConnectivityState state) {
  switch (state) {
    case ConnectivityState::kIdle:
      return "IDLE";
    case ConnectivityState::kConnecting:
      return "CONNECTING";
    case ConnectivityState::kReady:
      return "READY";
    case ConnectivityState::kTransientFailure:
      return "TRANSIENT_FAILURE";
    case ConnectivityState::kShutdown:
      return "SHUTDOWN";
  }
  return "UNKNOWN";
}

namespace internal {
namespace {

constexpr std::pair<ConnectivityState, grpc_connectivity_state> kStates[] = {
    {ConnectivityState::kIdle, GRPC_CHANNEL_IDLE},
    {ConnectivityState::kConnecting, GRPC_CHANNEL_CONNECTING},
    {ConnectivityState::kReady, GRPC_CHANNEL_READY},
    {ConnectivityState::kTransientFailure, GRPC_CHANNEL_TRANSIENT_FAILURE},
    {ConnectivityState::kShutdown, GRPC_CHANNEL_SHUTDOWN},
};

}  // namespace

grpc_connectivity_state ToGrpc(ConnectivityState state) {
  for (const auto& [ours, grpcs] : kStates) {
    if (ours == state) return grpcs;
  }
  return GRPC_CHANNEL_SHUTDOWN;
}

ConnectivityState FromGrpc(grpc_connectivity_state state) {
  for (const auto& [ours, grpcs] : kStates) {
    if (grpcs == state) return ours;
  }
  return ConnectivityState::kShutdown;
}

}  // namespace internal
}  // namespace lbkit
