// lbkit's ConnectivityState against gRPC's grpc_connectivity_state: the same
// five states, converted both ways through one table (connectivity.cc).
#ifndef LBKIT_SRC_CORE_CONNECTIVITY_H_
#define LBKIT_SRC_CORE_CONNECTIVITY_H_

#include <grpc/grpc.h>

#include "lbkit/connectivity.h"

namespace lbkit {
namespace internal {

// What a lbkit channel reports through grpc::ChannelInterface::GetState.
grpc_connectivity_state ToGrpc(ConnectivityState state);
// What a subchannel makes of its grpc::Channel's state. A value outside
// gRPC's five is SHUTDOWN.
ConnectivityState FromGrpc(grpc_connectivity_state state);

}  // namespace internal
}  // namespace lbkit

#endif  // LBKIT_SRC_CORE_CONNECTIVITY_H_
