// The "etcd" resolver (include/lbkit/etcd.h): the endpoints of a service are
// the keys under "SERVICE/" in etcd, valued as etcd's Go naming package writes
// them (DecodeEtcdEndpoint).
//
// How it follows them: one Range of the prefix (a linearizable read, so a
// member cut off from its cluster fails it rather than answering stale), then
// one Watch of the prefix from the Range's revision + 1. A PUT adds or changes
// a key's endpoint; a DELETE, or a value {"Op":1}, removes it; a value that
// does not decode removes the key's endpoint and is logged once per key and
// value. After the list, and after each watch response that changed the
// endpoint list, the whole list goes to the listener, by key order; an
// address named by two keys appears once, with the first key's attributes.
// An unchanged list is not reported again; an empty one is reported.
//
// Failures:
// - A watch canceled as compacted (its start revision is gone): Range again,
//   watch from the new revision.
// - A lost stream or a failed Range (member down, member without a leader:
//   the Watch carries "hasleader: true", so etcd cancels it when its member
//   loses the leader): the next listed member becomes current
//   (EtcdMembers::Advance), then, after EtcdBackoff::Next() (reset once a
//   watch is created), the watch resumes from the last revision seen + 1, on
//   that member. Nothing is relisted unless the history was compacted.
// - Until the first Range succeeds, each failure is reported with OnError
//   (UNAVAILABLE, naming the service, the member and etcd's error); after it,
//   the listener keeps the last endpoints and hears nothing of failures
//   (they are traced under LBKIT_TRACE=resolver).
// - A member that stops answering without closing its connection is noticed
//   by the etcd channel's keepalive (EtcdMembers: 10 s, then 5 s for the
//   ping's answer), which ends the stream as any other loss; a Range is
//   bounded by options.request_timeout.
// - progress_notify (etcd sends one every 10 minutes by default) keeps the
//   revision current while nothing changes, so a resumed watch rarely starts
//   from a compacted revision.
//
// Threads: none of its own. Every etcd call is asynchronous on lbkit's
// IoLoop (core/io_loop.h: one completion queue and one thread, lbkit-io,
// for the whole process), and the resolver is a state machine driven by
// their completions: list -> watch -> (failure: next member, backoff
// alarm) -> watch again. Its state lives in a `Core` that every operation
// in flight keeps alive (shared_ptr in each tag), so a completion that
// arrives after the resolver is destroyed touches only the Core, and the
// Core goes with the last one. The state machine runs only on the IoLoop
// thread (one thread: its steps never overlap), never blocks it, and needs
// no lock except for what Shutdown shares with it.
//
// Shutdown (any thread; the channel calls it on its control plane) sets
// `shutting_down_` under `mu_`, cancels the call in flight
// (ClientContext::TryCancel; a call not started yet is refused by
// Activate) and the backoff alarm, drops the listener, and waits until no
// listener call is under way: listener calls are made only with
// `shutting_down_` checked under `mu_` and counted there, so after Shutdown
// returns nothing calls the listener. Listener methods never block
// (resolver.h), so that wait is short. Called from inside a listener call
// on the IoLoop thread itself it cannot wait for that call (it is below it
// on the stack) and does not: the state machine checks `shutting_down_` after
// the call and stops. Called on the IoLoop thread outside one, there is
// nothing to wait for (the loop runs one step at a time). The cancelled
// operations complete soon after on the IoLoop and end the state machine.
// RequestReresolution is a no-op: the watch keeps the list current, and a
// lost watch is retried on its own.
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <grpcpp/alarm.h>
#include <grpcpp/client_context.h>

#include "core/io_loop.h"
#include "core/shown_text.h"
#include "core/trace.h"
#include "discovery/etcd_common.h"
#include "etcd/rpc.grpc.pb.h"
#include "lbkit/etcd.h"

namespace lbkit {
namespace {

using internal::EtcdBackoff;
using internal::EtcdMembers;
using internal::EtcdTarget;
using internal::IoLoop;
using internal::Shown;
using internal::Trace;
using internal::TraceFlag;

std::string StatusText(const grpc::Status& status) {
  return "gRPC status " + std::to_string(static_cast<int>(status.error_code())) + ": " +
         status.error_message();
}

using RangeCall = internal::EtcdUnaryCall<etcdserverpb::RangeResponse>;

// One Watch stream. One operation at a time is in flight on it (start,
// write, read, finish), each started by the completion of the one before.
struct WatchCall {
  enum class Outcome {
    kCompacted,  // the watch's history is gone: list again
    kFailed,     // the member failed: next member, back off, watch again
  };
  std::shared_ptr<grpc::Channel> channel;
  std::string member;
  grpc::ClientContext context;
  std::unique_ptr<etcdserverpb::Watch::Stub> stub;
  std::unique_ptr<
      grpc::ClientAsyncReaderWriter<etcdserverpb::WatchRequest, etcdserverpb::WatchResponse>>
      stream;
  etcdserverpb::WatchRequest request;
  etcdserverpb::WatchResponse response;
  grpc::Status status;
  Outcome outcome = Outcome::kFailed;
  std::string why;
  bool ended = true;  // by etcd or the connection; false when we leave a live stream
};

class Core final : public std::enable_shared_from_this<Core> {
 public:
  Core(EtcdTarget target, EtcdResolverOptions options)
      : target_(std::move(target)),
        options_(options),
        members_(target_.members, options.max_backoff),
        backoff_(options.initial_backoff, options.max_backoff) {}

  // Any thread.
  void Start(std::shared_ptr<ResolverListener> listener) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (shutting_down_ || started_) return;
      started_ = true;
      listener_ = std::move(listener);
    }
    IoLoop::Get().Post([self = shared_from_this()] { self->Step(); });
  }

  // Any thread, the IoLoop's included (see the top of the file).
  void Shutdown() {
    std::shared_ptr<ResolverListener> listener;
    {
      std::unique_lock<std::mutex> lock(mu_);
      shutting_down_ = true;
      if (active_ != nullptr) active_->TryCancel();
      if (alarm_ != nullptr) alarm_->Cancel();
      listener = std::move(listener_);
      const std::thread::id self = std::this_thread::get_id();
      notified_.wait(lock, [&] { return notifying_ == 0 || notifying_thread_ == self; });
    }
    // Released here, not under mu_: the listener's destructor is not ours.
    listener.reset();
  }

 private:
  // The IoLoop thread only, from here on.

  // Lists (first, or after a compaction) or watches on the current member.
  void Step() {
    if (ShuttingDown()) return;
    std::string member;
    std::shared_ptr<grpc::Channel> channel = members_.Current(&member);
    if (need_list_) {
      StartList(std::move(channel), std::move(member));
    } else {
      StartWatch(std::move(channel), std::move(member));
    }
  }

  // Ranges the prefix; OnListed reports the list.
  void StartList(std::shared_ptr<grpc::Channel> channel, std::string member) {
    auto call = std::make_shared<RangeCall>();
    call->channel = std::move(channel);
    call->member = std::move(member);
    call->context.set_deadline(std::chrono::system_clock::now() + options_.request_timeout);
    if (!Activate(&call->context)) return;
    etcdserverpb::RangeRequest request;
    request.set_key(target_.prefix());
    request.set_range_end(internal::PrefixRangeEnd(target_.prefix()));
    call->reader = etcdserverpb::KV::NewStub(call->channel)
                       ->PrepareAsyncRange(&call->context, request, IoLoop::Get().cq());
    call->reader->StartCall();
    call->reader->Finish(&call->response, &call->status,
                         internal::EtcdTag([self = shared_from_this(), call](bool /*ok*/) {
                           self->OnListed(*call);
                         }));
  }

  void OnListed(RangeCall& call) {
    Deactivate();
    if (ShuttingDown()) return;
    if (!call.status.ok()) {
      Retry(call.member,
            grpc::Status(call.status.error_code(), "Range failed: " + StatusText(call.status)));
      return;
    }
    const etcdserverpb::RangeResponse& response = call.response;
    entries_.clear();
    std::set<std::string> keys;
    for (const mvccpb::KeyValue& kv : response.kvs()) {
      Apply(kv, /*deleted=*/false);
      keys.insert(kv.key());
    }
    // Forget bad values whose keys went away while not watched.
    for (auto it = bad_values_.begin(); it != bad_values_.end();) {
      it = keys.count(it->first) != 0 ? std::next(it) : bad_values_.erase(it);
    }
    revision_ = response.header().revision();
    Trace(TraceFlag::kResolver, "etcd resolver for \"", Shown(target_.service), "\": listed ",
          response.kvs_size(), " keys at revision ", revision_);
    Report();
    listed_ = true;
    need_list_ = false;
    // The watch goes to the member that answered the Range.
    StartWatch(std::move(call.channel), std::move(call.member));
  }

  // Watches the prefix from revision_ + 1 until the stream ends.
  void StartWatch(std::shared_ptr<grpc::Channel> channel, std::string member) {
    if (ShuttingDown()) return;
    auto call = std::make_shared<WatchCall>();
    call->channel = std::move(channel);
    call->member = std::move(member);
    // etcd then cancels the stream when its member has no leader, so that a
    // watch attached to a minority member moves on instead of going silent.
    call->context.AddMetadata("hasleader", "true");
    if (!Activate(&call->context)) return;
    call->stub = etcdserverpb::Watch::NewStub(call->channel);
    call->stream = call->stub->PrepareAsyncWatch(&call->context, IoLoop::Get().cq());
    etcdserverpb::WatchCreateRequest* create = call->request.mutable_create_request();
    create->set_key(target_.prefix());
    create->set_range_end(internal::PrefixRangeEnd(target_.prefix()));
    create->set_start_revision(revision_ + 1);
    create->set_progress_notify(true);
    call->stream->StartCall(WatchTag(call, &Core::OnWatchStarted));
  }

  using WatchStep = void (Core::*)(const std::shared_ptr<WatchCall>&, bool);
  IoLoop::Tag* WatchTag(const std::shared_ptr<WatchCall>& call, WatchStep step) {
    return internal::EtcdTag(
        [self = shared_from_this(), call, step](bool ok) { ((*self).*step)(call, ok); });
  }

  void OnWatchStarted(const std::shared_ptr<WatchCall>& call, bool ok) {
    if (!ok) return FinishWatch(call);
    call->stream->Write(call->request, WatchTag(call, &Core::OnWatchWritten));
  }

  void OnWatchWritten(const std::shared_ptr<WatchCall>& call, bool ok) {
    if (!ok) return FinishWatch(call);
    call->stream->Read(&call->response, WatchTag(call, &Core::OnWatchRead));
  }

  void OnWatchRead(const std::shared_ptr<WatchCall>& call, bool ok) {
    if (!ok || ShuttingDown()) return FinishWatch(call);
    const etcdserverpb::WatchResponse& response = call->response;
    if (response.canceled()) {
      if (response.compact_revision() > 0) {
        Trace(TraceFlag::kResolver, "etcd resolver for \"", Shown(target_.service),
              "\": watch from revision ", revision_ + 1, " compacted (at ",
              response.compact_revision(), "), listing again");
        call->outcome = WatchCall::Outcome::kCompacted;
      } else {
        call->why = "Watch canceled: " + response.cancel_reason();
      }
      call->ended = false;
      return FinishWatch(call);
    }
    if (response.created()) backoff_.Reset();
    OnWatchResponse(response);
    call->stream->Read(&call->response, WatchTag(call, &Core::OnWatchRead));
  }

  void FinishWatch(const std::shared_ptr<WatchCall>& call) {
    // Cancelling an ended call would replace its real status with CANCELLED;
    // a live one must be cancelled, or Finish would wait for etcd to end it.
    if (!call->ended) call->context.TryCancel();
    call->stream->Finish(&call->status, WatchTag(call, &Core::OnWatchFinished));
  }

  void OnWatchFinished(const std::shared_ptr<WatchCall>& call, bool /*ok*/) {
    Deactivate();
    if (ShuttingDown()) return;
    if (call->outcome == WatchCall::Outcome::kCompacted) {
      need_list_ = true;
      return Step();
    }
    if (call->why.empty()) call->why = "Watch ended: " + StatusText(call->status);
    Retry(call->member, grpc::Status(grpc::StatusCode::UNAVAILABLE, call->why));
  }

  // The member failed: reports it, moves on to the next member, and steps
  // again after a backoff.
  void Retry(const std::string& member, const grpc::Status& status) {
    std::string message = "etcd resolver for service \"" + Shown(target_.service) +
                          "\": etcd member " + member + ": " + status.error_message();
    Trace(TraceFlag::kResolver, message);
    if (!listed_) {
      grpc::Status error(grpc::StatusCode::UNAVAILABLE, message);
      Notify([&error](ResolverListener& listener) { listener.OnError(error); });
    }
    members_.Advance();
    const auto deadline = std::chrono::system_clock::now() + backoff_.Next();
    std::lock_guard<std::mutex> lock(mu_);
    if (shutting_down_) return;
    // The previous alarm has fired (this chain started from it or before
    // it was set); a new one per wait keeps Alarm's one-shot use.
    alarm_ = std::make_unique<grpc::Alarm>();
    alarm_->Set(IoLoop::Get().cq(), deadline,
                internal::EtcdTag([self = shared_from_this()](bool ok) {
                  // Not ok: cancelled by Shutdown.
                  if (ok) self->Step();
                }));
  }

  void OnWatchResponse(const etcdserverpb::WatchResponse& response) {
    if (response.events_size() == 0) {
      // A progress notification: every event up to its revision was sent.
      if (!response.created()) revision_ = std::max(revision_, response.header().revision());
      return;
    }
    for (const mvccpb::Event& event : response.events()) {
      Apply(event.kv(), event.type() == mvccpb::Event::DELETE);
      revision_ = std::max(revision_, event.kv().mod_revision());
    }
    Report();
  }

  // Applies one key's current value (or its deletion) to entries_.
  void Apply(const mvccpb::KeyValue& kv, bool deleted) {
    const std::string& key = kv.key();
    if (deleted) {
      entries_.erase(key);
      bad_values_.erase(key);
      return;
    }
    internal::EtcdEndpointValue value;
    grpc::Status status = internal::DecodeEtcdEndpoint(kv.value(), &value);
    if (!status.ok()) {
      entries_.erase(key);
      // Once per key and value: a relist or an unrelated event must not log
      // the same bad value again.
      auto [it, inserted] = bad_values_.try_emplace(key, kv.value());
      if (inserted || it->second != kv.value()) {
        it->second = kv.value();
        internal::LogLine("etcd resolver for service \"" + Shown(target_.service) +
                          "\": skipping key \"" + Shown(key) + "\": " + status.error_message());
      }
      return;
    }
    bad_values_.erase(key);
    if (value.remove) {
      entries_.erase(key);
    } else {
      entries_[key] = std::move(value.endpoint);
    }
  }

  // Reports the endpoints when they differ from the last report (always the
  // first time: an empty list is news too).
  void Report() {
    std::vector<Endpoint> endpoints;
    endpoints.reserve(entries_.size());
    // Two keys may name the same address; the first one (by key) counts.
    std::set<std::vector<std::string>> seen;
    for (const auto& [key, endpoint] : entries_) {
      if (seen.insert(endpoint.addresses).second) endpoints.push_back(endpoint);
    }
    if (reported_ && endpoints == last_reported_) return;
    reported_ = true;
    last_reported_ = endpoints;
    Trace(TraceFlag::kResolver, "etcd resolver for \"", Shown(target_.service),
          "\": ", endpoints.size(), " endpoints at revision ", revision_);
    ResolverState state;
    state.endpoints = std::move(endpoints);
    Notify([&state](ResolverListener& listener) { listener.OnUpdate(std::move(state)); });
  }

  // Calls the listener unless shutting down; Shutdown waits for it.
  template <typename Fn>
  void Notify(const Fn& fn) {
    std::shared_ptr<ResolverListener> listener;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (shutting_down_ || listener_ == nullptr) return;
      listener = listener_;
      ++notifying_;
      notifying_thread_ = std::this_thread::get_id();
    }
    fn(*listener);
    {
      std::lock_guard<std::mutex> lock(mu_);
      --notifying_;
    }
    notified_.notify_all();
  }

  // Makes `context` the one Shutdown cancels. False, starting nothing, once
  // shutting down.
  bool Activate(grpc::ClientContext* context) {
    std::lock_guard<std::mutex> lock(mu_);
    if (shutting_down_) return false;
    active_ = context;
    return true;
  }
  void Deactivate() {
    std::lock_guard<std::mutex> lock(mu_);
    active_ = nullptr;
  }
  bool ShuttingDown() {
    std::lock_guard<std::mutex> lock(mu_);
    return shutting_down_;
  }

  const EtcdTarget target_;
  const EtcdResolverOptions options_;
  EtcdMembers members_;

  std::mutex mu_;
  std::condition_variable notified_;
  bool started_ = false;                        // guarded by mu_
  bool shutting_down_ = false;                  // guarded by mu_
  std::shared_ptr<ResolverListener> listener_;  // guarded by mu_; dropped by Shutdown
  int notifying_ = 0;                           // listener calls under way; guarded by mu_
  std::thread::id notifying_thread_;            // the IoLoop thread, once it called
  grpc::ClientContext* active_ = nullptr;       // the RPC in flight; guarded by mu_
  std::unique_ptr<grpc::Alarm> alarm_;          // the backoff; guarded by mu_

  // Only the IoLoop thread uses these.
  EtcdBackoff backoff_;
  bool need_list_ = true;
  std::map<std::string, Endpoint> entries_;        // key -> its endpoint
  std::map<std::string, std::string> bad_values_;  // key -> the bad value logged
  int64_t revision_ = 0;                           // every event up to it is applied
  bool listed_ = false;                            // a Range succeeded once
  bool reported_ = false;
  std::vector<Endpoint> last_reported_;
};

// The Resolver the channel holds; its Core may outlive it by the
// completions of cancelled operations.
class EtcdResolver final : public Resolver {
 public:
  EtcdResolver(EtcdTarget target, EtcdResolverOptions options)
      : core_(std::make_shared<Core>(std::move(target), options)) {}
  ~EtcdResolver() override { Shutdown(); }

  void Start(std::shared_ptr<ResolverListener> listener) override {
    core_->Start(std::move(listener));
  }
  // The watch keeps the list current; nothing to do.
  void RequestReresolution() override {}
  void Shutdown() override { core_->Shutdown(); }

 private:
  const std::shared_ptr<Core> core_;
};

class EtcdResolverFactory final : public ResolverFactory {
 public:
  explicit EtcdResolverFactory(EtcdResolverOptions options) : options_(options) {}
  std::string scheme() const override { return "etcd"; }
  grpc::Status Create(const Target& target, std::shared_ptr<Resolver>* resolver) const override {
    EtcdTarget parsed;
    grpc::Status status = internal::ParseEtcdTarget(target, &parsed);
    if (!status.ok()) return status;
    *resolver = std::make_shared<EtcdResolver>(std::move(parsed), options_);
    return grpc::Status::OK;
  }

 private:
  const EtcdResolverOptions options_;
};

}  // namespace

std::shared_ptr<const ResolverFactory> MakeEtcdResolverFactory(EtcdResolverOptions options) {
  // A zero or negative delay would retry a down etcd back to back (and,
  // before the first list, report an error to the channel each time).
  const EtcdResolverOptions defaults;
  if (options.initial_backoff <= std::chrono::milliseconds(0)) {
    options.initial_backoff = defaults.initial_backoff;
  }
  if (options.max_backoff < options.initial_backoff) options.max_backoff = options.initial_backoff;
  if (options.request_timeout <= std::chrono::milliseconds(0)) {
    options.request_timeout = defaults.request_timeout;
  }
  return std::make_shared<EtcdResolverFactory>(options);
}

}  // namespace lbkit
