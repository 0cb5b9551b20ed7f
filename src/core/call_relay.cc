#include "core/call_relay.h"

#include <climits>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

#include <grpcpp/channel.h>
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/server.h>
#include <grpcpp/support/client_interceptor.h>

#include "core/guarded_pick.h"
#include "core/io_loop.h"

namespace lbkit {
namespace internal {
namespace {

// A relayed call keeps its own method name (stats and tracing plugins see the
// method, not one name per call); the QueuedCall's id travels in this header,
// added by the call's EndWatcher and read by the relay server.
constexpr char kRelayIdKey[] = "lbkit-relay-id";

// The id of the call being created on this thread, for the interceptor
// factory, which gRPC runs synchronously inside call creation.
thread_local uint64_t creating_id = 0;

std::atomic<uint64_t> next_id{1};

// Calls created but not yet seen by the relay server, by id.
std::mutex& RegistryMu() {
  static auto* mu = new std::mutex();
  return *mu;
}
std::unordered_map<uint64_t, std::shared_ptr<QueuedCall>>& Registry() {
  static auto* registry = new std::unordered_map<uint64_t, std::shared_ptr<QueuedCall>>();
  return *registry;
}

std::shared_ptr<QueuedCall> TakeFromRegistry(uint64_t id) {
  std::lock_guard<std::mutex> lock(RegistryMu());
  auto it = Registry().find(id);
  if (it == Registry().end()) return nullptr;
  std::shared_ptr<QueuedCall> call = std::move(it->second);
  Registry().erase(it);
  return call;
}

std::shared_ptr<QueuedCall> FindInRegistry(uint64_t id) {
  std::lock_guard<std::mutex> lock(RegistryMu());
  auto it = Registry().find(id);
  return it == Registry().end() ? nullptr : it->second;
}

uint64_t RelayId(const grpc::GenericServerContext& context) {
  auto it = context.client_metadata().find(kRelayIdKey);
  if (it == context.client_metadata().end()) return 0;
  return std::strtoull(std::string(it->second.data(), it->second.size()).c_str(), nullptr, 10);
}

}  // namespace

// Watches each relayed call from the stub's side. A call cancelled (or past
// its deadline) before it reached the relay server is never seen there, so
// its end must be learnt here: from its status, or at the latest when the
// call is destroyed.
class EndWatcher final : public grpc::experimental::Interceptor {
 public:
  EndWatcher(uint64_t id, std::weak_ptr<QueuedCall> call) : id_(id), call_(std::move(call)) {}
  ~EndWatcher() override { Ended(grpc::Status(grpc::StatusCode::CANCELLED, "call destroyed")); }
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    using grpc::experimental::InterceptionHookPoints;
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      // The context's own map: a context serves one call, and the relay copies
      // the metadata the call was created with, not this.
      methods->GetSendInitialMetadata()->emplace(kRelayIdKey, std::to_string(id_));
    }
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_CLOSE)) {
      // A real half-close, told apart from a cancellation, which the relay
      // server sees the same way (a failed read).
      if (std::shared_ptr<QueuedCall> call = call_.lock()) {
        call->half_closed_.store(true, std::memory_order_release);
      }
    }
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_STATUS)) {
      Ended(*methods->GetRecvStatus());
    }
    methods->Proceed();
  }

 private:
  void Ended(const grpc::Status& status) {
    if (std::shared_ptr<QueuedCall> call = call_.lock()) {
      call->Fail(status.ok() ? grpc::Status(grpc::StatusCode::CANCELLED, "call ended") : status);
      TakeFromRegistry(id_);  // the relay server has seen it, or never will
    }
    call_.reset();
  }
  const uint64_t id_;
  std::weak_ptr<QueuedCall> call_;
};

namespace {

class EndWatcherFactory final : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  grpc::experimental::Interceptor* CreateClientInterceptor(
      grpc::experimental::ClientRpcInfo* info) override {
    (void)info;
    uint64_t id = creating_id;
    std::shared_ptr<QueuedCall> call = id == 0 ? nullptr : FindInRegistry(id);
    return call == nullptr ? nullptr : new EndWatcher(id, call);
  }
};

const std::shared_ptr<grpc::Channel>& RelayChannel() {
  static auto* channel = [] {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(-1);
    args.SetMaxSendMessageSize(-1);
    std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> factories;
    factories.push_back(std::make_unique<EndWatcherFactory>());
    return new std::shared_ptr<grpc::Channel>(
        IoLoop::Get().server()->experimental().InProcessChannelWithInterceptors(
            args, std::move(factories)));
  }();
  return *channel;
}

// Metadata that gRPC itself writes on every call, and that a relay must not
// copy from one call to the other.
bool IsTransportMetadata(grpc::string_ref key) {
  if (key.empty() || *key.begin() == ':') return true;
  if (key.starts_with("grpc-")) return true;
  return key == "content-type" || key == "te" || key == "user-agent";
}

std::string ToString(grpc::string_ref ref) { return std::string(ref.data(), ref.size()); }

}  // namespace

// One relayed call on the IoLoop thread: the server side of the stub's
// in-process call, and once placed, the real call on the subchannel.
class RelaySession final : public std::enable_shared_from_this<RelaySession> {
 public:
  // Asks the relay server for its next call.
  static void Listen() {
    auto session = std::make_shared<RelaySession>();
    session->self_ = session;
    session->pending_ = 2;  // the accept and the done notification
    session->server_ctx_.AsyncNotifyWhenDone(&session->done_tag_);
    IoLoop& loop = IoLoop::Get();
    loop.generic_service()->RequestCall(&session->server_ctx_, &session->server_stream_, loop.cq(),
                                        loop.cq(), &session->accept_tag_);
  }

  // The call has been placed or has ended (QueuedCall::Advance).
  void Advance() {
    if (started_ || finishing_) return;
    int phase = call_->phase_.load(std::memory_order_acquire);
    if (phase == QueuedCall::kEnded) {
      FinishServer(call_->status_);
    } else if (phase == QueuedCall::kPlaced) {
      StartUpstream();
    }
  }

 private:
  // The relay overlaps what it can, so that a relayed call costs few more
  // round trips on the IoLoop than a direct one: the stub's first message is
  // read while the call waits for its pick; once placed, the real call starts
  // with that message in the same batch as its headers (and, for a call with
  // one request message, with the half-close); a message from the backend is
  // read while the one before is still being written to the stub.

  void OnAccepted(bool ok) {
    if (!ok) {  // the server is shutting down; it never does
      Release();
      return;
    }
    Listen();  // one call in, the next one awaited
    const std::string& method = server_ctx_.method();
    call_ = TakeFromRegistry(RelayId(server_ctx_));
    if (call_ == nullptr) {
      FinishServer(grpc::Status(grpc::StatusCode::INTERNAL, "lbkit relay: unknown call " + method));
      Release();
      return;
    }
    call_->session_ = shared_from_this();
    ReadClient();
    Advance();
    Release();
  }

  // The stub's call ended: finished by us, cancelled, or past its deadline.
  void OnServerDone(bool /*ok*/) {
    server_done_ = true;
    if (server_ctx_.IsCancelled()) {
      if (call_ != nullptr && !started_) {
        call_->Fail(grpc::Status(grpc::StatusCode::CANCELLED, "call ended while queued"));
      }
      if (started_) upstream_ctx_.TryCancel();
    }
    Release();
  }

  void StartUpstream() {
    started_ = true;
    if (server_done_) {
      // Ended between the pick and now: the pick's done-callback hears of it.
      if (call_->on_done_) {
        RunDone(call_->on_done_, CallDoneInfo(grpc::Status(grpc::StatusCode::CANCELLED,
                                                           "call ended before it was sent")));
        call_->on_done_ = nullptr;
      }
      return;
    }
    for (const auto& [key, value] : call_->metadata_) {
      // grpc-internal-encoding-request and the like: set below, by gRPC.
      if (!IsTransportMetadata(key)) upstream_ctx_.AddMetadata(key, value);
    }
    // What the picker attached (PickResult::AddMetadata), already checked.
    for (const auto& [key, value] : call_->pick_metadata_) upstream_ctx_.AddMetadata(key, value);
    upstream_ctx_.set_deadline(call_->deadline_);
    upstream_ctx_.set_wait_for_ready(call_->wait_for_ready_);
    if (call_->credentials_ != nullptr) upstream_ctx_.set_credentials(call_->credentials_);
    if (call_->compression_ != GRPC_COMPRESS_NONE) {
      upstream_ctx_.set_compression_algorithm(call_->compression_);
    }
    // The headers wait for the first message (or the half-close) only when
    // it is known to come: a stream whose client waits for the server first
    // must get its headers out at once.
    const bool corked = have_in_ || client_eof_ || call_->one_request_;
    upstream_ctx_.set_initial_metadata_corked(corked);
    upstream_ = call_->subchannel_->StartGenericCall(
        &upstream_ctx_, call_->method_, IoLoop::Get().cq(), std::move(call_->on_done_));
    call_->on_done_ = nullptr;
    // Corked, StartCall sends nothing and its tag never completes: the first
    // write carries the headers and may go at once. Otherwise the first write
    // waits for StartCall's batch, which uses the same operation set.
    pending_ += corked ? 1 : 2;
    upstream_->StartCall(&upstream_start_tag_);
    upstream_->ReadInitialMetadata(&upstream_metadata_tag_);
    upstream_writable_ = corked;
    PumpUp();
  }

  // Client to backend: one read from the stub at a time, into in_; one write
  // to the backend at a time, from up_.
  void ReadClient() {
    if (reading_client_ || client_eof_ || have_in_) return;
    reading_client_ = true;
    ++pending_;
    server_stream_.Read(&in_, &in_read_tag_);
  }
  void OnUpstreamStarted(bool ok) {
    if (ok) {
      upstream_writable_ = true;
      PumpUp();
    }
    Release();
  }
  void OnClientMessage(bool ok) {
    reading_client_ = false;
    if (ok) {
      have_in_ = true;
    } else {
      client_eof_ = true;
    }
    PumpUp();
    Release();
  }
  void PumpUp() {
    if (!upstream_writable_ || server_done_ || writing_up_ || writes_done_) return;
    if (have_in_) {
      up_.Swap(&in_);
      have_in_ = false;
      writing_up_ = true;
      ++pending_;
      if (call_->one_request_) {
        // Unary and server-streaming stubs send exactly one message.
        writes_done_ = true;
        upstream_->WriteLast(up_, grpc::WriteOptions(), &upstream_write_tag_);
      } else {
        upstream_->Write(up_, &upstream_write_tag_);
        ReadClient();
      }
    } else if (client_eof_) {
      if (call_->half_closed_.load(std::memory_order_acquire)) {
        ++pending_;
        writing_up_ = true;
        writes_done_ = true;
        upstream_->WritesDone(&upstream_write_tag_);
      } else {
        // The stub's call was cancelled or passed its deadline: the backend
        // must not take what it has read for a whole stream.
        writes_done_ = true;
        upstream_ctx_.TryCancel();
      }
    }
  }
  void OnUpstreamWritten(bool ok) {
    writing_up_ = false;
    if (ok) {
      ReadClient();
      PumpUp();
    }
    Release();
  }

  // Backend to client: headers, then messages (one read from the backend
  // at a time, into out_; one write to the stub at a time, from down_), then
  // the status once every message is written.
  void OnUpstreamMetadata(bool ok) {
    if (!ok) {
      upstream_eof_ = true;
      ++pending_;
      upstream_->Finish(&upstream_status_, &upstream_finish_tag_);
    } else {
      for (const auto& [key, value] : upstream_ctx_.GetServerInitialMetadata()) {
        if (!IsTransportMetadata(key))
          server_ctx_.AddInitialMetadata(ToString(key), ToString(value));
      }
      writing_down_ = true;
      ++pending_;
      server_stream_.SendInitialMetadata(&out_write_tag_);
      ReadUpstream();
    }
    Release();
  }
  void ReadUpstream() {
    if (reading_up_ || upstream_eof_ || have_out_) return;
    reading_up_ = true;
    ++pending_;
    upstream_->Read(&out_, &upstream_read_tag_);  // fails at once if the call is over
  }
  void OnUpstreamMessage(bool ok) {
    reading_up_ = false;
    if (ok) {
      have_out_ = true;
      PumpDown();
    } else {
      upstream_eof_ = true;
      ++pending_;
      upstream_->Finish(&upstream_status_, &upstream_finish_tag_);
    }
    Release();
  }
  void OnClientWritten(bool /*ok*/) {
    writing_down_ = false;
    PumpDown();
    Release();
  }
  void PumpDown() {
    if (writing_down_ || finishing_) return;
    if (have_out_) {
      down_.Swap(&out_);
      have_out_ = false;
      writing_down_ = true;
      ++pending_;
      server_stream_.Write(down_, &out_write_tag_);
      ReadUpstream();
    } else if (upstream_status_ready_) {
      FinishServer(upstream_status_);
    }
  }
  void OnUpstreamFinished(bool /*ok*/) {
    for (const auto& [key, value] : upstream_ctx_.GetServerTrailingMetadata()) {
      if (!IsTransportMetadata(key))
        server_ctx_.AddTrailingMetadata(ToString(key), ToString(value));
    }
    upstream_status_ready_ = true;
    PumpDown();
    Release();
  }

  void FinishServer(const grpc::Status& status) {
    if (finishing_) return;
    finishing_ = true;
    ++pending_;
    server_stream_.Finish(status, &server_finish_tag_);
  }
  void OnServerFinished(bool /*ok*/) { Release(); }

  // Every operation holds one count; the last to complete lets go.
  void Release() {
    if (--pending_ > 0) return;
    if (call_ != nullptr) call_->session_ = nullptr;
    self_.reset();  // may destroy this object: nothing after it
  }

  grpc::GenericServerContext server_ctx_;
  grpc::GenericServerAsyncReaderWriter server_stream_{&server_ctx_};
  grpc::ClientContext upstream_ctx_;
  std::unique_ptr<grpc::GenericClientAsyncReaderWriter> upstream_;
  grpc::ByteBuffer in_;    // read from the stub
  grpc::ByteBuffer up_;    // being written to the backend
  grpc::ByteBuffer out_;   // read from the backend
  grpc::ByteBuffer down_;  // being written to the stub
  grpc::Status upstream_status_;
  std::shared_ptr<QueuedCall> call_;
  int pending_ = 0;
  bool server_done_ = false;
  bool started_ = false;
  bool finishing_ = false;
  bool writes_done_ = false;
  bool upstream_writable_ = false;
  bool reading_client_ = false;
  bool have_in_ = false;
  bool client_eof_ = false;
  bool writing_up_ = false;
  bool reading_up_ = false;
  bool have_out_ = false;
  bool upstream_eof_ = false;
  bool writing_down_ = false;
  bool upstream_status_ready_ = false;

  MethodTag<RelaySession> accept_tag_{this, &RelaySession::OnAccepted};
  MethodTag<RelaySession> done_tag_{this, &RelaySession::OnServerDone};
  MethodTag<RelaySession> upstream_start_tag_{this, &RelaySession::OnUpstreamStarted};
  MethodTag<RelaySession> in_read_tag_{this, &RelaySession::OnClientMessage};
  MethodTag<RelaySession> upstream_write_tag_{this, &RelaySession::OnUpstreamWritten};
  MethodTag<RelaySession> upstream_metadata_tag_{this, &RelaySession::OnUpstreamMetadata};
  MethodTag<RelaySession> out_write_tag_{this, &RelaySession::OnClientWritten};
  MethodTag<RelaySession> upstream_read_tag_{this, &RelaySession::OnUpstreamMessage};
  MethodTag<RelaySession> upstream_finish_tag_{this, &RelaySession::OnUpstreamFinished};
  MethodTag<RelaySession> server_finish_tag_{this, &RelaySession::OnServerFinished};
  std::shared_ptr<RelaySession> self_;
};

QueuedCall::QueuedCall(const PickArgs& args, grpc::ClientContext& context)
    : id_(next_id.fetch_add(1, std::memory_order_relaxed)),
      method_(args.method),
      metadata_(*args.metadata),
      wait_for_ready_(args.wait_for_ready),
      // Absolute, so that time spent queued counts against a relative one.
      deadline_(gpr_convert_clock_type(context.raw_deadline(), GPR_CLOCK_MONOTONIC)),
      credentials_(context.credentials()),
      compression_(context.compression_algorithm()) {
  args_.method = method_;
  args_.metadata = &metadata_;
  // As the stub saw it when the call arrived; a relative deadline is made
  // absolute now, as deadline_ is.
  args_.deadline = context.deadline();
  args_.wait_for_ready = args.wait_for_ready;
}

QueuedCall::~QueuedCall() {
  if (on_done_) {
    RunDone(on_done_, CallDoneInfo(grpc::Status(grpc::StatusCode::CANCELLED,
                                                "call ended before it was sent")));
  }
}

bool QueuedCall::Place(std::shared_ptr<SubchannelImpl> subchannel, CallDoneCallback on_done,
                       std::vector<std::pair<std::string, std::string>> metadata) {
  int expected = kWaiting;
  // Claim the call first, so that nothing else reads what is written next.
  if (!phase_.compare_exchange_strong(expected, kClaimed, std::memory_order_acq_rel)) {
    if (on_done) {
      RunDone(on_done,
              CallDoneInfo(grpc::Status(grpc::StatusCode::CANCELLED, "call ended while queued")));
    }
    return false;
  }
  subchannel_ = std::move(subchannel);
  on_done_ = std::move(on_done);
  pick_metadata_ = std::move(metadata);
  phase_.store(kPlaced, std::memory_order_release);
  IoLoop::Get().Post([self = shared_from_this()] { self->Advance(); });
  return true;
}

bool QueuedCall::Fail(const grpc::Status& status) {
  int expected = kWaiting;
  if (!phase_.compare_exchange_strong(expected, kClaimed, std::memory_order_acq_rel)) return false;
  status_ = status;
  phase_.store(kEnded, std::memory_order_release);
  IoLoop::Get().Post([self = shared_from_this()] { self->Advance(); });
  return true;
}

void QueuedCall::Advance() {
  if (session_ != nullptr) session_->Advance();
}

RelayedCallStart::RelayedCallStart(const std::shared_ptr<QueuedCall>& queued, bool one_request)
    : method_(queued->method_.c_str()) {
  queued->one_request_ = one_request;
  static std::once_flag listening;
  std::call_once(listening, [] {
    IoLoop::Get().Post([] {
      for (int i = 0; i < 4; ++i) RelaySession::Listen();
    });
  });
  {
    std::lock_guard<std::mutex> lock(RegistryMu());
    Registry().emplace(queued->id_, queued);
  }
  creating_id = queued->id_;
}

RelayedCallStart::~RelayedCallStart() { creating_id = 0; }

grpc::Channel* RelayedCallStart::channel() const { return RelayChannel().get(); }

}  // namespace internal
}  // namespace lbkit
