// Channels that fail every call with one status. A call lbkit must fail (the
// picker failed, the deadline passed while queued, the channel is shut down)
// still has to be a real gRPC call that the generated stub can drive, so it is
// created on one of these. Part of the stub adapter (stub_adapter.h, items 10
// and 12).
#ifndef LBKIT_SRC_CORE_STUB_ADAPTER_LAME_CHANNEL_H_
#define LBKIT_SRC_CORE_STUB_ADAPTER_LAME_CHANNEL_H_

#include <memory>

#include <grpcpp/channel.h>
#include <grpcpp/support/status.h>

namespace lbkit {
namespace internal {

// A channel whose calls all end with `status` (not OK). Cached by status;
// thread-safe.
std::shared_ptr<grpc::Channel> LameChannel(const grpc::Status& status);

// The completion queue lbkit channels give callback-API calls: one for the
// process, owned by a channel that is never destroyed (so that gRPC's shared
// callback queue, where it has one, is never torn down under a running call;
// stub_adapter.h, item 12). The first call takes that hold.
grpc::CompletionQueue* SharedCallbackCQ();

}  // namespace internal
}  // namespace lbkit

#endif  // LBKIT_SRC_CORE_STUB_ADAPTER_LAME_CHANNEL_H_
