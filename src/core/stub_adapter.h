// StubAdapter: lbkit's only door into gRPC C++'s non-public channel hooks
// (design.md, rule 4). Everything else in lbkit uses public API.
//
// Why it exists: generated stubs drive a channel through private virtuals of
// grpc::ChannelInterface (CreateCall, RegisterMethod, CallbackCQ, ...). lbkit's
// channel overrides them (overriding needs no access), but to route a call it
// must call them on the picked subchannel's grpc::Channel, and it must read a
// call's wait-for-ready flag and metadata from its ClientContext. Both classes
// befriend the class template grpc::ClientReader<R>; an explicit
// specialization for a tag type of lbkit's own is a friend as well. That
// specialization lives in stub_adapter.cc and does nothing but forward.
// Checked against grpc++ 1.51; tests cover every call style through it.
#ifndef LBKIT_SRC_CORE_STUB_ADAPTER_H_
#define LBKIT_SRC_CORE_STUB_ADAPTER_H_

#include <map>
#include <string>

#include <grpcpp/client_context.h>
#include <grpcpp/completion_queue.h>
#include <grpcpp/impl/call.h>
#include <grpcpp/impl/channel_interface.h>
#include <grpcpp/impl/rpc_method.h>

namespace lbkit {
namespace internal {

class StubAdapter {
 public:
  // channel->CreateCall(method, context, cq).
  static grpc::internal::Call CreateCall(grpc::ChannelInterface* channel,
                                         const grpc::internal::RpcMethod& method,
                                         grpc::ClientContext* context, grpc::CompletionQueue* cq);
  // channel->CallbackCQ().
  static grpc::CompletionQueue* CallbackCQ(grpc::ChannelInterface* channel);
  // Whether the call was marked wait-for-ready.
  static bool WaitForReady(const grpc::ClientContext& context);
  // Whether the application set wait-for-ready on the context itself
  // (ClientContext::set_wait_for_ready), which wins over a service config's
  // waitForReady.
  static bool WaitForReadyExplicitlySet(const grpc::ClientContext& context);
  // Whether ClientContext::TryCancel() ran before the call was created.
  static bool IsCancelled(grpc::ClientContext& context);
  // The metadata the call will send.
  static const std::multimap<std::string, std::string>& SendMetadata(
      const grpc::ClientContext& context);
};

}  // namespace internal
}  // namespace lbkit

#endif  // LBKIT_SRC_CORE_STUB_ADAPTER_H_
