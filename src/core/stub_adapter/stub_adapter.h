// The stub adapter: lbkit's one door into gRPC C++'s non-public API
// (design.md, rule 4). Everything in this folder may use it; nothing outside
// it may (the ctest `internal_api_confined` greps src/, include/, tools/ and
// examples/ for it). The rest of lbkit talks to the adapter in lbkit's own
// terms: ClientConn answers each call with a CallRoute (client_conn.h), and
// the adapter turns that into the gRPC call the stub drives.
//
// Files:
//   stub_adapter.h     this list, the version check, what the rest of lbkit uses
//   hooks.h            the friend hook (private members, read and called)
//   channel_facade.cc  the grpc::ChannelInterface stubs drive; a CallRoute
//                      made into a grpc::internal::Call on a subchannel (with
//                      its registered methods), on the relay, or failed
//   lame_channel.*     channels that fail every call; the callback queue
//
// What lbkit relies on that gRPC's public API does not promise. Verified with
// gRPC C++ 1.51 (Debian's libgrpc++-dev 1.51.1); docs/porting.md says how to
// check each item on another version.
//
// Private members, reached through the friend hook (hooks.h):
//  1. grpc::ChannelInterface and grpc::ClientContext declare
//     `template <class R> friend class grpc::ClientReader;`. An explicit
//     specialization, grpc::ClientReader<StubAdapterTag>, is therefore a friend
//     of both. Everything below marked "private" goes through it.
//  2. ChannelInterface::CreateCall(const RpcMethod&, ClientContext*,
//     CompletionQueue*), private pure virtual: called on the picked
//     subchannel's grpc::Channel, on the relay's in-process channel, and on
//     lame channels.
//  3. ChannelInterface::CallbackCQ(), private virtual: the callback queue of
//     the anchor channel (item 12).
//  4. ClientContext::initial_metadata_flags(), private: the call is
//     wait-for-ready iff GRPC_INITIAL_METADATA_WAIT_FOR_READY is set in it
//     (set_wait_for_ready has no public getter), and the application set
//     it itself iff GRPC_INITIAL_METADATA_WAIT_FOR_READY_EXPLICITLY_SET is
//     (a methodConfig waitForReady yields to that; method_config.h).
//  5. ClientContext::send_initial_metadata_, private field, a
//     std::multimap<std::string, std::string>: what AddMetadata added, read
//     at CreateCall as the metadata the call will send (PickArgs::metadata;
//     the relay copies it to the real call).
//
// Private virtuals lbkit's channel overrides (channel_facade.cc). Overriding
// needs no access, but these signatures are not public API; `override` makes
// any change a compile error:
//  6. CreateCall, PerformOpsOnCall, RegisterMethod, NotifyOnStateChangeImpl,
//     WaitForStateChangeImpl, CallbackCQ. CreateCallInternal is left at its
//     default: gRPC calls it only on an InterceptedChannel, and lbkit's
//     channel has no interceptors of its own (the subchannels' channels do).
//
// Internal types and functions:
//  7. grpc::internal::RpcMethod: the 3-argument constructor (name,
//     suffix_for_stats, type; an unregistered method), name(),
//     suffix_for_stats(), method_type(), channel_tag(). RpcMethod keeps the
//     name's pointer, not a copy: the string must outlive it.
//  8. The registered-method tag: the 4-argument RpcMethod constructor (name,
//     suffix_for_stats, type, const std::shared_ptr<ChannelInterface>&)
//     calls channel->RegisterMethod(name) and keeps the returned pointer as
//     channel_tag(). A generated stub builds one per method at construction,
//     so lbkit's RegisterMethod returns its MethodInfo and gets it back on
//     every CreateCall; a GenericStub call arrives with a null tag. On a
//     subchannel's grpc::Channel the same constructor gives gRPC's registered
//     call handle (one per name, the same for the same name), which spares
//     each call gRPC's method-name interning: RegisteredMethods below.
//  9. grpc::internal::Call, the value CreateCall returns; it carries its
//     channel as its CallHook, and gRPC sends the call's operations to that
//     hook, not to the channel the stub holds. A call lbkit created on a
//     subchannel therefore never comes back to lbkit's PerformOpsOnCall,
//     which only forwards (Call::PerformOps) in case it ever does.
// 10. grpc::CreateChannelInternal(host, grpc_channel*, interceptor
//     factories): wraps gRPC core's lame channel
//     (grpc_lame_client_channel_create, public C API) in a grpc::Channel, so
//     that a call lbkit fails is a real call the stub can drive.
//
// Behavioural assumptions (no signature shows them; tests do):
// 11. A stub calls CreateCall before it sends anything, and the call's
//     first batch sends the ClientContext's metadata as it is then: metadata
//     ClientConn adds before the call is created (the picker's
//     PickResult::AddMetadata) is sent. ClientContext::deadline() and
//     raw_deadline() (public) are the call's deadline at CreateCall.
// 12. The callback queue: in 1.51 on Linux (epoll1, no background poller)
//     grpc::Channel::CallbackCQ() returns CompletionQueue::
//     CallbackAlternativeCQ(), one process-wide queue, reference-counted by
//     the channels that asked for it; the last channel destroyed shuts it
//     down and joins its threads. lbkit takes a reference that is never
//     released (SharedCallbackCQ: the queue of a lame channel never
//     destroyed) before any subchannel can make a callback call, because a
//     subchannel's grpc::Channel released inside one of that queue's own
//     callbacks would otherwise tear it down from its own thread (a double
//     free AddressSanitizer caught). lbkit channels hand the same queue to
//     callback-API calls, which may outlive the lbkit channel. Where gRPC
//     gives each channel its own callback queue instead, the anchor's queue
//     still lives for the process, and nothing else changes.
// 13. gRPC builds a call's client interceptors synchronously inside
//     CreateCall, on the calling thread: lbkit hands the pick's done-callback
//     and the relayed call's id to its interceptor factories through
//     thread_locals set around CreateCall (SubchannelImpl::StartCall,
//     RelayedCallStart).
#ifndef LBKIT_SRC_CORE_STUB_ADAPTER_STUB_ADAPTER_H_
#define LBKIT_SRC_CORE_STUB_ADAPTER_STUB_ADAPTER_H_

#include <atomic>
#include <cstddef>
#include <memory>

#include <grpcpp/channel.h>
#include <grpcpp/version_info.h>

#include "lbkit/channel.h"

// Every item above was checked against these versions only. A different
// gRPC may still build and silently route calls wrongly, so it is refused
// unless the porter asks for it (-DLBKIT_ALLOW_UNVERIFIED_GRPC=ON) and then
// runs the tests named below.
// clang-format off
#if !(GRPC_CPP_VERSION_MAJOR == 1 && GRPC_CPP_VERSION_MINOR == 51)
#ifndef LBKIT_ALLOW_UNVERIFIED_GRPC
#error "lbkit's stub adapter (src/core/stub_adapter/) is verified with gRPC C++ 1.51 only. \
To port it: check each item listed in src/core/stub_adapter/stub_adapter.h against this gRPC \
as docs/porting.md says, configure with -DLBKIT_ALLOW_UNVERIFIED_GRPC=ON, and run the tests \
of every call style through the adapter (lbkit_integration_tests; in the build directory: \
ctest -R '^(CallStylesTest|RelayedCalls|DoneCallbackTest|QueuedCalls|CallInfoTest|CallSemantics|ConnectivityState|ServiceConfig|Targets)[.]|^EveryStyle/|^internal_api_confined$'), \
then the whole suite."
#else
#pragma message("lbkit: stub adapter built against an unverified gRPC C++ (LBKIT_ALLOW_UNVERIFIED_GRPC); run the tests docs/porting.md names")
#endif
#endif
// clang-format on

namespace grpc {
namespace internal {
class RpcMethod;
}  // namespace internal
}  // namespace grpc

namespace lbkit {
namespace internal {

class ClientConn;

// The grpc::ChannelInterface that CreateChannel hands out: every call goes
// to `conn`, which routes it. Also takes lbkit's hold on gRPC's callback
// queue (item 12), so create it before `conn` can make any subchannel.
std::shared_ptr<Channel> NewChannelFacade(std::shared_ptr<ClientConn> conn);

// One subchannel's registered-method handles (item 8), one slot per method
// of lbkit's channel (MethodInfo::index). Each call reads one slot; a slot is
// written once, by the first call of its method on the subchannel. Lives in
// the SubchannelImpl, beside the connection it registers on.
class RegisteredMethods {
 public:
  static constexpr size_t kSize = 64;

  RegisteredMethods() = default;
  ~RegisteredMethods();
  RegisteredMethods(const RegisteredMethods&) = delete;
  RegisteredMethods& operator=(const RegisteredMethods&) = delete;

  // Any thread: `method` registered on `channel` (the subchannel's), made on
  // the first call. `index` < kSize.
  const grpc::internal::RpcMethod& Get(const grpc::internal::RpcMethod& method, size_t index,
                                       const std::shared_ptr<grpc::Channel>& channel);

 private:
  std::atomic<const grpc::internal::RpcMethod*> slots_[kSize] = {};
};

}  // namespace internal
}  // namespace lbkit

#endif  // LBKIT_SRC_CORE_STUB_ADAPTER_STUB_ADAPTER_H_
