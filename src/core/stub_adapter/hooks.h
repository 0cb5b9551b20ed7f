// The friend hook: the one place lbkit reaches private members of gRPC
// classes. Included only by the adapter's own .cc files (stub_adapter.h lists
// each member used here and why).
//
// grpc::ChannelInterface and grpc::ClientContext both declare
// `template <class R> friend class grpc::ClientReader;`, which befriends
// every specialization of that template, this explicit one for a tag type of
// lbkit's own included. It forwards and holds no state; every function is
// inline so that the call path pays nothing for the indirection.
#ifndef LBKIT_SRC_CORE_STUB_ADAPTER_HOOKS_H_
#define LBKIT_SRC_CORE_STUB_ADAPTER_HOOKS_H_

#include <map>
#include <string>

#include <grpc/grpc.h>
#include <grpcpp/client_context.h>
#include <grpcpp/completion_queue.h>
#include <grpcpp/impl/call.h>
#include <grpcpp/impl/channel_interface.h>
#include <grpcpp/impl/rpc_method.h>
#include <grpcpp/support/sync_stream.h>

#include "core/stub_adapter/stub_adapter.h"

namespace lbkit {
namespace internal {
// Only names the specialization below; never instantiated.
struct StubAdapterTag {};
}  // namespace internal
}  // namespace lbkit

namespace grpc {

template <>
class ClientReader<lbkit::internal::StubAdapterTag> {
 public:
  // ChannelInterface::CreateCall, private pure virtual.
  static internal::Call CreateCall(ChannelInterface* channel, const internal::RpcMethod& method,
                                   ClientContext* context, CompletionQueue* cq) {
    return channel->CreateCall(method, context, cq);
  }
  // ChannelInterface::CallbackCQ, private virtual.
  static CompletionQueue* CallbackCQ(ChannelInterface* channel) { return channel->CallbackCQ(); }
  // ClientContext::initial_metadata_flags(), private: set_wait_for_ready has
  // no public getter.
  static bool WaitForReady(const ClientContext& context) {
    return (context.initial_metadata_flags() & GRPC_INITIAL_METADATA_WAIT_FOR_READY) != 0;
  }
  // Likewise: whether the application called set_wait_for_ready itself,
  // which wins over a service config's waitForReady (gRPC's rule).
  static bool WaitForReadyExplicitlySet(const ClientContext& context) {
    return (context.initial_metadata_flags() &
            GRPC_INITIAL_METADATA_WAIT_FOR_READY_EXPLICITLY_SET) != 0;
  }
  // ClientContext::send_initial_metadata_, private: what AddMetadata added,
  // which the call sends with its first batch.
  static const std::multimap<std::string, std::string>& SendMetadata(const ClientContext& context) {
    return context.send_initial_metadata_;
  }
};

}  // namespace grpc

namespace lbkit {
namespace internal {

using Hooks = grpc::ClientReader<StubAdapterTag>;

}  // namespace internal
}  // namespace lbkit

#endif  // LBKIT_SRC_CORE_STUB_ADAPTER_HOOKS_H_
