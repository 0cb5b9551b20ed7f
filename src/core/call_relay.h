// The call relay: how a call that cannot be placed yet leaves the stub at once
// and is placed later, with no thread parked on it (design.md, rule 5).
//
// gRPC C++ lets a channel hand a stub only a call that already exists on some
// channel. For a call no picker can place yet, lbkit creates it on an
// in-process channel to its own port-less server (io_loop.h). The stub sees
// an ordinary call: it returns at once, and gRPC itself ends it at its
// deadline, on TryCancel, or with the status the relay finishes it with. The
// call waits in its channel's queue as a QueuedCall; once a picker places it,
// the relay opens the real call on the chosen subchannel and copies metadata,
// messages and the status between the two, on lbkit's IoLoop thread.
// docs/queued-calls.md explains the choice and what differs for such calls.
#ifndef LBKIT_SRC_CORE_CALL_RELAY_H_
#define LBKIT_SRC_CORE_CALL_RELAY_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>
#include <grpcpp/security/credentials.h>

#include "core/subchannel.h"
#include "lbkit/picker.h"

namespace lbkit {
namespace internal {

class RelaySession;

// A call waiting for a pick. Its channel keeps it in arrival order and
// offers it to each new picker; the stub drives the relayed call made for it
// (RelayedCallStart).
class QueuedCall : public std::enable_shared_from_this<QueuedCall> {
 public:
  // `args`: the call as the stub started it (its method, metadata and
  // wait-for-ready flag, copied); `context`: its ClientContext, for the
  // deadline, per-call credentials and compression algorithm.
  QueuedCall(const PickArgs& args, grpc::ClientContext& context);
  ~QueuedCall();

  // What the picker sees. Stable for the call's life.
  const PickArgs& args() const { return args_; }
  bool wait_for_ready() const { return wait_for_ready_; }

  // Places the call on `subchannel`, with `metadata` (checked by
  // CheckPickMetadata) added to what it sends. Returns false, and runs
  // `on_done` with the call's end, if the call has already ended. Any thread.
  bool Place(std::shared_ptr<SubchannelImpl> subchannel, CallDoneCallback on_done,
             std::vector<std::pair<std::string, std::string>> metadata = {});
  // Ends the call with `status`. Returns false if it was already placed or
  // ended. Any thread.
  bool Fail(const grpc::Status& status);
  // Whether it is neither waiting nor placeable any more (ended or placed).
  bool settled() const { return phase_.load(std::memory_order_acquire) != kWaiting; }

 private:
  friend class RelaySession;
  friend class EndWatcher;
  friend class RelayedCallStart;
  // kClaimed: being placed or failed by one thread; the fields below are
  // written, then the phase moves on.
  enum Phase { kWaiting, kClaimed, kPlaced, kEnded };

  // IoLoop thread: the session has arrived, or the phase has changed.
  void Advance();

  const uint64_t id_;
  // RpcMethod and gRPC's ClientRpcInfo keep a pointer to this string: it
  // lives as long as this object.
  const std::string method_;
  std::multimap<std::string, std::string> metadata_;
  PickArgs args_;
  const bool wait_for_ready_;
  const gpr_timespec deadline_;
  const std::shared_ptr<grpc::CallCredentials> credentials_;
  const grpc_compression_algorithm compression_;

  std::atomic<int> phase_{kWaiting};
  // The stub half-closed its side (set by the call's interceptor).
  std::atomic<bool> half_closed_{false};
  // Set before the relay sees the call (RelayedCallStart).
  bool one_request_ = false;
  // Written while kClaimed, read once kPlaced or kEnded.
  std::shared_ptr<SubchannelImpl> subchannel_;
  CallDoneCallback on_done_;
  std::vector<std::pair<std::string, std::string>> pick_metadata_;
  grpc::Status status_;

  // IoLoop thread only.
  std::shared_ptr<RelaySession> session_;
};

// The making of the stub-facing call for a QueuedCall: while one of these
// lives, the stub adapter creates that call on channel(), lbkit's in-process
// channel, for method() (stub_adapter/channel_facade.cc). The call is handed
// to the relay when the stub starts it. Not copyable; one thread.
class RelayedCallStart {
 public:
  // Registers `queued` with the relay and marks this thread as creating its
  // call (the relay's interceptor factory runs inside call creation).
  // `one_request`: the stub sends exactly one message, then half-closes
  // (unary and server-streaming methods), so the relay sends that message
  // with the headers and the half-close in one batch.
  RelayedCallStart(const std::shared_ptr<QueuedCall>& queued, bool one_request);
  ~RelayedCallStart();
  RelayedCallStart(const RelayedCallStart&) = delete;
  RelayedCallStart& operator=(const RelayedCallStart&) = delete;

  grpc::Channel* channel() const;
  // The call's method; lives as long as the QueuedCall (gRPC keeps the
  // pointer, not a copy).
  const char* method() const { return method_; }

 private:
  const char* method_;
};

}  // namespace internal
}  // namespace lbkit

#endif  // LBKIT_SRC_CORE_CALL_RELAY_H_
