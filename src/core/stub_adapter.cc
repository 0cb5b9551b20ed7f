#include "core/stub_adapter.h"

#include <grpc/grpc.h>
#include <grpcpp/impl/codegen/sync.h>
#include <grpcpp/support/sync_stream.h>

namespace lbkit {
namespace internal {
// Only names the specialization below; never instantiated.
struct StubAdapterTag {};
}  // namespace internal
}  // namespace lbkit

namespace grpc {

// grpc::ChannelInterface and grpc::ClientContext declare
// `template <class R> friend class grpc::ClientReader;`, which befriends this
// explicit specialization too. It forwards and holds no state.
template <>
class ClientReader<lbkit::internal::StubAdapterTag> {
 public:
  static internal::Call CreateCall(ChannelInterface* channel, const internal::RpcMethod& method,
                                   ClientContext* context, CompletionQueue* cq) {
    return channel->CreateCall(method, context, cq);
  }
  static CompletionQueue* CallbackCQ(ChannelInterface* channel) { return channel->CallbackCQ(); }
  static bool WaitForReady(const ClientContext& context) {
    return (context.initial_metadata_flags() & GRPC_INITIAL_METADATA_WAIT_FOR_READY) != 0;
  }
  static bool WaitForReadyExplicitlySet(const ClientContext& context) {
    return (context.initial_metadata_flags() &
            GRPC_INITIAL_METADATA_WAIT_FOR_READY_EXPLICITLY_SET) != 0;
  }
  static const std::multimap<std::string, std::string>& SendMetadata(const ClientContext& context) {
    return context.send_initial_metadata_;
  }
  // TryCancel() before the call exists only records the wish, under mu_.
  static bool IsCancelled(ClientContext& context) {
    internal::MutexLock lock(&context.mu_);
    return context.call_canceled_;
  }
};

}  // namespace grpc

namespace lbkit {
namespace internal {

using Hooks = grpc::ClientReader<StubAdapterTag>;

grpc::internal::Call StubAdapter::CreateCall(grpc::ChannelInterface* channel,
                                             const grpc::internal::RpcMethod& method,
                                             grpc::ClientContext* context,
                                             grpc::CompletionQueue* cq) {
  return Hooks::CreateCall(channel, method, context, cq);
}

grpc::CompletionQueue* StubAdapter::CallbackCQ(grpc::ChannelInterface* channel) {
  return Hooks::CallbackCQ(channel);
}

bool StubAdapter::WaitForReady(const grpc::ClientContext& context) {
  return Hooks::WaitForReady(context);
}

bool StubAdapter::WaitForReadyExplicitlySet(const grpc::ClientContext& context) {
  return Hooks::WaitForReadyExplicitlySet(context);
}

bool StubAdapter::IsCancelled(grpc::ClientContext& context) { return Hooks::IsCancelled(context); }

const std::multimap<std::string, std::string>& StubAdapter::SendMetadata(
    const grpc::ClientContext& context) {
  return Hooks::SendMetadata(context);
}

}  // namespace internal
}  // namespace lbkit
