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
// Threads: one thread per resolver ("lbkit-etcd"), started by Start, runs everything with
// gRPC's synchronous API (the blocking calls stay off the channel's control
// thread and off gRPC's callback threads). Start, RequestReresolution and
// Shutdown only touch state under `mu_`, so they return promptly.
// Shutdown sets `shutting_down_`, cancels the RPC in flight
// (ClientContext::TryCancel; a context registered after that is refused
// before its RPC starts), wakes a backoff wait, and joins the thread: a
// cancelled synchronous call returns at once, and the listener's methods never
// block (resolver.h), so the join is short. After the join nothing can call
// the listener. RequestReresolution is a no-op: the watch keeps the list
// current, and a lost watch is retried on its own.
#include <pthread.h>

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

#include <grpcpp/client_context.h>

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
using internal::Shown;
using internal::Trace;
using internal::TraceFlag;

std::string StatusText(const grpc::Status& status) {
  return "gRPC status " + std::to_string(static_cast<int>(status.error_code())) + ": " +
         status.error_message();
}

class EtcdResolver final : public Resolver {
 public:
  EtcdResolver(EtcdTarget target, EtcdResolverOptions options)
      : target_(std::move(target)),
        options_(options),
        members_(target_.members, options.max_backoff),
        backoff_(options.initial_backoff, options.max_backoff) {}

  ~EtcdResolver() override { Shutdown(); }

  void Start(std::shared_ptr<ResolverListener> listener) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (shutting_down_ || thread_.joinable()) return;
    listener_ = std::move(listener);
    thread_ = std::thread([this] {
      // Named, or it would inherit the name of the thread that started it
      // (the channel's lbkit-control) and be counted as the channel's.
      pthread_setname_np(pthread_self(), "lbkit-etcd");
      Run();
    });
  }

  // The watch keeps the list current; nothing to do.
  void RequestReresolution() override {}

  void Shutdown() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      shutting_down_ = true;
      if (active_ != nullptr) active_->TryCancel();
      wake_.notify_all();
    }
    if (thread_.joinable()) thread_.join();
    listener_.reset();
  }

 private:
  enum class Outcome {
    kCompacted,  // the watch's history is gone: list again
    kFailed,     // the member failed: next member, back off, watch again
    kShutdown,
  };

  void Run() {
    bool need_list = true;
    while (!ShuttingDown()) {
      std::string member;
      std::shared_ptr<grpc::Channel> channel = members_.Current(&member);
      grpc::Status status;
      if (need_list) {
        status = List(channel);
        if (status.ok()) need_list = false;
      }
      if (status.ok()) {
        Outcome outcome = Watch(channel, &status);
        if (outcome == Outcome::kShutdown) return;
        if (outcome == Outcome::kCompacted) {
          need_list = true;
          continue;
        }
      }
      if (ShuttingDown()) return;
      Failed(member, status);
      members_.Advance();
      if (!Sleep(backoff_.Next())) return;
    }
  }

  void Failed(const std::string& member, const grpc::Status& status) {
    std::string message = "etcd resolver for service \"" + Shown(target_.service) +
                          "\": etcd member " + member + ": " + status.error_message();
    Trace(TraceFlag::kResolver, message);
    if (!listed_) listener_->OnError(grpc::Status(grpc::StatusCode::UNAVAILABLE, message));
  }

  // Ranges the prefix and reports the list. On failure the status says which
  // call failed and why.
  grpc::Status List(const std::shared_ptr<grpc::Channel>& channel) {
    etcdserverpb::RangeRequest request;
    request.set_key(target_.prefix());
    request.set_range_end(internal::PrefixRangeEnd(target_.prefix()));
    etcdserverpb::RangeResponse response;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + options_.request_timeout);
    if (!Activate(&context)) return grpc::Status::CANCELLED;
    grpc::Status status = etcdserverpb::KV::NewStub(channel)->Range(&context, request, &response);
    Deactivate();
    if (!status.ok())
      return grpc::Status(status.error_code(), "Range failed: " + StatusText(status));
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
    return grpc::Status::OK;
  }

  // Watches the prefix from revision_ + 1 until the stream ends.
  Outcome Watch(const std::shared_ptr<grpc::Channel>& channel, grpc::Status* status) {
    grpc::ClientContext context;
    // etcd then cancels the stream when its member has no leader, so that a
    // watch attached to a minority member moves on instead of going silent.
    context.AddMetadata("hasleader", "true");
    if (!Activate(&context)) return Outcome::kShutdown;
    auto stream = etcdserverpb::Watch::NewStub(channel)->Watch(&context);
    etcdserverpb::WatchRequest request;
    etcdserverpb::WatchCreateRequest* create = request.mutable_create_request();
    create->set_key(target_.prefix());
    create->set_range_end(internal::PrefixRangeEnd(target_.prefix()));
    create->set_start_revision(revision_ + 1);
    create->set_progress_notify(true);
    Outcome outcome = Outcome::kFailed;
    std::string why;
    bool ended = true;  // by etcd or the connection; false when we leave a live stream
    if (stream->Write(request)) {
      etcdserverpb::WatchResponse response;
      while (stream->Read(&response)) {
        if (response.canceled()) {
          if (response.compact_revision() > 0) {
            Trace(TraceFlag::kResolver, "etcd resolver for \"", Shown(target_.service),
                  "\": watch from revision ", revision_ + 1, " compacted (at ",
                  response.compact_revision(), "), listing again");
            outcome = Outcome::kCompacted;
          } else {
            why = "Watch canceled: " + response.cancel_reason();
          }
          ended = false;
          break;
        }
        if (response.created()) backoff_.Reset();
        OnWatchResponse(response);
      }
    }
    // Cancelling an ended call would replace its real status with CANCELLED;
    // a live one must be cancelled, or Finish would wait for etcd to end it.
    if (!ended) context.TryCancel();
    grpc::Status finish = stream->Finish();
    Deactivate();
    if (ShuttingDown()) return Outcome::kShutdown;
    if (outcome == Outcome::kFailed) {
      if (why.empty()) why = "Watch ended: " + StatusText(finish);
      *status = grpc::Status(grpc::StatusCode::UNAVAILABLE, why);
    }
    return outcome;
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
    listener_->OnUpdate(std::move(state));
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
  // Waits `delay` unless shut down first. Returns false when shutting down.
  bool Sleep(std::chrono::milliseconds delay) {
    std::unique_lock<std::mutex> lock(mu_);
    wake_.wait_for(lock, delay, [this] { return shutting_down_; });
    return !shutting_down_;
  }

  const EtcdTarget target_;
  const EtcdResolverOptions options_;
  EtcdMembers members_;

  std::mutex mu_;
  std::condition_variable wake_;
  bool shutting_down_ = false;             // guarded by mu_
  grpc::ClientContext* active_ = nullptr;  // the RPC in flight; guarded by mu_
  std::thread thread_;                     // set by Start, joined by Shutdown

  // Only the thread uses these (listener_ is set before it starts).
  std::shared_ptr<ResolverListener> listener_;
  EtcdBackoff backoff_;
  std::map<std::string, Endpoint> entries_;        // key -> its endpoint
  std::map<std::string, std::string> bad_values_;  // key -> the bad value logged
  int64_t revision_ = 0;                           // every event up to it is applied
  bool listed_ = false;                            // a Range succeeded once
  bool reported_ = false;
  std::vector<Endpoint> last_reported_;
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
