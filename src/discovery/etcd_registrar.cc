// EtcdRegistrar (include/lbkit/etcd.h): grant -> put -> keepalive, starting
// over when the lease is lost, as an asynchronous state machine on lbkit's
// IoLoop (core/io_loop.h: one completion queue and one thread, lbkit-io, for
// the whole process): no thread per registrar. Each step is started by the
// completion of the one before: an etcd call, or an alarm (the backoff, the
// wait between keepalives, the deadline of a keepalive stream's operation).
// The state lives in a `Core` that every operation in flight keeps alive
// (shared_ptr in each tag); it runs only on the IoLoop thread and never
// blocks it. That loop has one thread, so a stream operation's completion
// and its watchdog never run at once: they share KeepAliveCall unlocked.
//
// Shutdown (a user's thread, never the IoLoop's: see etcd.h) sets
// `stopping_`, cancels the etcd call in flight (its ClientContext is
// published in `active_`; a call not started yet is refused by Activate) and
// the alarm, and waits until no call is in flight (cancelled calls complete
// at once), so that it knows the last lease granted, then revokes that lease
// with a synchronous call on its own thread. The IoLoop is never blocked.
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include <grpcpp/alarm.h>
#include <grpcpp/client_context.h>

#include "core/address.h"
#include "core/io_loop.h"
#include "core/shown_text.h"
#include "core/trace.h"
#include "discovery/etcd_common.h"
#include "etcd/rpc.grpc.pb.h"
#include "lbkit/etcd.h"

namespace lbkit {
namespace {

using Clock = std::chrono::steady_clock;
using internal::EtcdBackoff;
using internal::EtcdMembers;
using internal::EtcdTarget;
using internal::IoLoop;
using internal::LogLine;

grpc::Status Invalid(const std::string& message) {
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "etcd registrar: " + message);
}

std::string LeaseHex(int64_t lease) {
  char text[32];
  std::snprintf(text, sizeof(text), "%llx", static_cast<unsigned long long>(lease));
  return text;
}

// Deadline of each grant and put. Longer than any healthy etcd answer; a
// member that does not answer in time is treated as down.
constexpr std::chrono::seconds kRequestTimeout{5};

using GrantCall = internal::EtcdUnaryCall<etcdserverpb::LeaseGrantResponse>;
using PutCall = internal::EtcdUnaryCall<etcdserverpb::PutResponse>;

// One LeaseKeepAlive stream. One operation at a time is in flight on it
// (start, write, read, finish), each awaited until a deadline: the
// watchdog alarm cancels the stream when the operation is late.
struct KeepAliveCall {
  grpc::ClientContext context;
  std::unique_ptr<etcdserverpb::Lease::Stub> stub;
  std::unique_ptr<grpc::ClientAsyncReaderWriter<etcdserverpb::LeaseKeepAliveRequest,
                                                etcdserverpb::LeaseKeepAliveResponse>>
      stream;
  etcdserverpb::LeaseKeepAliveRequest request;
  etcdserverpb::LeaseKeepAliveResponse response;
  grpc::Status status;
  std::unique_ptr<grpc::Alarm> watchdog;  // destroyed (so cancelled) when its operation ends
  uint64_t operation = 0;                 // counts the operations started
  bool pending = false;                   // the last one has not completed
  bool lost = false;                      // etcd answered that the lease is gone
  std::string failure = "keepalive stream closed";
};

class Core final : public std::enable_shared_from_this<Core> {
 public:
  Core(EtcdRegistrarOptions options, EtcdTarget target)
      : options_(std::move(options)),
        key_(internal::EtcdEndpointKey(target.service, options_.address)),
        value_(internal::EncodeEtcdEndpoint(options_.address, options_.attributes)),
        members_(std::move(target.members), options_.max_backoff),
        // etcd's own clients keep alive at a third of the TTL: two requests
        // may be lost before the lease expires.
        keepalive_interval_(std::max<std::chrono::milliseconds>(
            std::chrono::duration_cast<std::chrono::milliseconds>(options_.ttl) / 3,
            std::chrono::milliseconds(100))),
        // A second at least, so that a busy etcd is not taken for a hung one.
        reply_timeout_(
            std::max<std::chrono::milliseconds>(keepalive_interval_, std::chrono::seconds(1))),
        backoff_(options_.initial_backoff, options_.max_backoff) {}

  void Start() {
    IoLoop::Get().Post([self = shared_from_this()] { self->Step(); });
  }

  // Any thread but the IoLoop's.
  bool WaitRegistered(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, timeout, [this] { return registered_ || stopping_; });
    return registered_;
  }
  bool registered() const {
    std::lock_guard<std::mutex> lock(mu_);
    return registered_;
  }
  std::string last_error() const {
    std::lock_guard<std::mutex> lock(mu_);
    return last_error_;
  }

  // Stops the state machine: cancels its call and alarm, and waits (until
  // `deadline` at the latest) until no call is in flight. Returns the last
  // lease granted (0: none). Any thread but the IoLoop's.
  int64_t Stop(std::chrono::system_clock::time_point deadline) {
    std::unique_lock<std::mutex> lock(mu_);
    stopping_ = true;
    registered_ = false;
    if (active_ != nullptr) active_->TryCancel();
    if (alarm_ != nullptr) alarm_->Cancel();
    cv_.notify_all();
    cv_.wait_until(lock, deadline, [this] { return !in_flight_; });
    return granted_;
  }

  // Revokes `lease` (which deletes the key with it): each member once, one
  // being down must not keep the key registered. Synchronous: called by
  // Shutdown on the user's thread.
  grpc::Status Deregister(int64_t lease, std::chrono::system_clock::time_point deadline) {
    grpc::Status status;
    for (size_t attempt = 0; attempt < members_.size(); ++attempt) {
      if (attempt > 0) members_.Advance();
      auto channel = members_.Current();
      grpc::ClientContext context;
      context.set_deadline(deadline);
      etcdserverpb::LeaseRevokeRequest request;
      request.set_id(lease);
      etcdserverpb::LeaseRevokeResponse response;
      status = etcdserverpb::Lease::NewStub(channel)->LeaseRevoke(&context, request, &response);
      // Already expired or revoked: the key is gone with it.
      if (status.error_code() == grpc::StatusCode::NOT_FOUND) status = grpc::Status::OK;
      if (status.ok() || std::chrono::system_clock::now() >= deadline) break;
    }
    return status;
  }

  const std::string& key() const { return key_; }
  std::chrono::seconds ttl() const { return options_.ttl; }

 private:
  // The IoLoop thread only, from here on.

  // Registers (no lease, or one that must have expired) or keeps the lease
  // alive.
  void Step() {
    if (stopping()) return;
    // Past the TTL without a keepalive, etcd has dropped the lease (and
    // the key with it): only a new one registers the server again.
    if (lease_ != 0 && Clock::now() - last_alive_ >= options_.ttl) {
      LogLine("etcd registrar: no keepalive for " + internal::Shown(key_) + " in " +
              std::to_string(options_.ttl.count()) + " s; registering again");
      lease_ = 0;
    }
    if (lease_ == 0) {
      StartGrant();
    } else {
      StartKeepAlive();
    }
  }

  // Grants a lease; OnGranted writes the key with it.
  void StartGrant() {
    auto call = std::make_shared<GrantCall>();
    call->channel = members_.Current(&call->member);
    call->context.set_deadline(std::chrono::system_clock::now() + kRequestTimeout);
    if (!Activate(&call->context)) return;
    etcdserverpb::LeaseGrantRequest request;
    request.set_ttl(options_.ttl.count());
    call->reader = etcdserverpb::Lease::NewStub(call->channel)
                       ->PrepareAsyncLeaseGrant(&call->context, request, IoLoop::Get().cq());
    call->reader->StartCall();
    call->reader->Finish(&call->response, &call->status,
                         internal::EtcdTag([self = shared_from_this(), call](bool /*ok*/) {
                           self->OnGranted(*call);
                         }));
  }

  void OnGranted(GrantCall& call) {
    grpc::Status status = call.status;
    if (status.ok() && !call.response.error().empty()) {
      status = grpc::Status(grpc::StatusCode::UNAVAILABLE, "lease grant: " + call.response.error());
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      // Published before the call counts as done: a Shutdown waiting for
      // it then revokes this lease, which also removes a key the put may
      // still write.
      if (status.ok()) granted_ = call.response.id();
    }
    Deactivate();
    if (stopping()) return;
    if (!status.ok()) return Failed(status);
    StartPut(std::move(call.channel), std::move(call.member), call.response.id());
  }

  void StartPut(std::shared_ptr<grpc::Channel> channel, std::string member, int64_t lease) {
    auto call = std::make_shared<PutCall>();
    call->channel = std::move(channel);
    call->member = std::move(member);
    call->context.set_deadline(std::chrono::system_clock::now() + kRequestTimeout);
    if (!Activate(&call->context)) return;
    etcdserverpb::PutRequest request;
    request.set_key(key_);
    request.set_value(value_);
    request.set_lease(lease);
    call->reader = etcdserverpb::KV::NewStub(call->channel)
                       ->PrepareAsyncPut(&call->context, request, IoLoop::Get().cq());
    call->reader->StartCall();
    call->reader->Finish(&call->response, &call->status,
                         internal::EtcdTag([self = shared_from_this(), call, lease](bool /*ok*/) {
                           self->OnPut(*call, lease);
                         }));
  }

  void OnPut(PutCall& call, int64_t lease) {
    Deactivate();
    if (stopping()) return;
    if (!call.status.ok()) return Failed(call.status);
    lease_ = lease;
    last_alive_ = Clock::now();
    LogLine("etcd registrar: registered " + internal::Shown(key_) + " with lease " +
            LeaseHex(lease_) + " (ttl " + std::to_string(options_.ttl.count()) + " s) on " +
            call.member);
    SetRegistered();
    StartKeepAlive();
  }

  // Keeps lease_ alive on one stream until it fails, the lease is gone, or
  // Shutdown(). Each answer is awaited about one keepalive interval, so a
  // member that hangs is left in time to keep the lease alive through
  // another one.
  void StartKeepAlive() {
    auto call = std::make_shared<KeepAliveCall>();
    if (!Activate(&call->context)) return;
    call->stub = etcdserverpb::Lease::NewStub(members_.Current());
    call->stream = call->stub->PrepareAsyncLeaseKeepAlive(&call->context, IoLoop::Get().cq());
    Await(call, kRequestTimeout);
    call->stream->StartCall(KeepAliveTag(call, &Core::OnKeepAliveStarted));
  }

  using KeepAliveStep = void (Core::*)(const std::shared_ptr<KeepAliveCall>&, bool);
  IoLoop::Tag* KeepAliveTag(const std::shared_ptr<KeepAliveCall>& call, KeepAliveStep step) {
    return internal::EtcdTag([self = shared_from_this(), call, step](bool ok) {
      // The operation ended: its watchdog is cancelled (its tag still comes).
      call->pending = false;
      call->watchdog.reset();
      ((*self).*step)(call, ok);
    });
  }

  // Starts the watchdog of the operation about to start on `call`: past
  // `timeout` it cancels the stream, and the operation fails.
  void Await(const std::shared_ptr<KeepAliveCall>& call, std::chrono::milliseconds timeout) {
    const uint64_t operation = ++call->operation;
    call->pending = true;
    call->watchdog = std::make_unique<grpc::Alarm>();
    call->watchdog->Set(IoLoop::Get().cq(), std::chrono::system_clock::now() + timeout,
                        internal::EtcdTag([call, operation](bool ok) {
                          // Not ok: cancelled, the operation ended in time.
                          // Fired, but the operation's completion ran first:
                          // nothing to cancel either.
                          if (!ok || !call->pending || call->operation != operation) return;
                          call->context.TryCancel();
                        }));
  }

  void OnKeepAliveStarted(const std::shared_ptr<KeepAliveCall>& call, bool ok) {
    if (!ok) return FinishKeepAlive(call);
    WriteKeepAlive(call);
  }

  void WriteKeepAlive(const std::shared_ptr<KeepAliveCall>& call) {
    call->request.set_id(lease_);
    Await(call, reply_timeout_);
    call->stream->Write(call->request, KeepAliveTag(call, &Core::OnKeepAliveWritten));
  }

  void OnKeepAliveWritten(const std::shared_ptr<KeepAliveCall>& call, bool ok) {
    if (!ok) return FinishKeepAlive(call);
    Await(call, reply_timeout_);
    call->stream->Read(&call->response, KeepAliveTag(call, &Core::OnKeepAliveRead));
  }

  void OnKeepAliveRead(const std::shared_ptr<KeepAliveCall>& call, bool ok) {
    if (!ok) {
      call->failure = "no keepalive answer in " + std::to_string(reply_timeout_.count()) + " ms";
      return FinishKeepAlive(call);
    }
    if (call->response.ttl() <= 0) {
      call->lost = true;
      return FinishKeepAlive(call);
    }
    last_alive_ = Clock::now();
    backoff_.Reset();
    SetRegistered();
    bool armed = Alarm(keepalive_interval_, [self = shared_from_this(), call](bool ok) {
      if (ok && !self->stopping()) {
        self->WriteKeepAlive(call);
      } else {
        self->FinishKeepAlive(call);
      }
    });
    if (!armed) FinishKeepAlive(call);
  }

  void FinishKeepAlive(const std::shared_ptr<KeepAliveCall>& call) {
    // Finish reports the stream's status (and frees it) once cancelled.
    call->context.TryCancel();
    call->stream->Finish(&call->status, KeepAliveTag(call, &Core::OnKeepAliveFinished));
  }

  void OnKeepAliveFinished(const std::shared_ptr<KeepAliveCall>& call, bool /*ok*/) {
    Deactivate();
    if (stopping()) return;
    if (call->lost) {
      LogLine("etcd registrar: lease " + LeaseHex(lease_) + " of " + internal::Shown(key_) +
              " is gone; registering again");
      SetError("lease " + LeaseHex(lease_) + " expired or was revoked");
      lease_ = 0;
      return Step();
    }
    const grpc::Status& status = call->status;
    if (status.ok() || status.error_code() == grpc::StatusCode::CANCELLED) {
      return Failed(grpc::Status(grpc::StatusCode::UNAVAILABLE, call->failure));
    }
    Failed(status);
  }

  // A failed etcd call: logged when the error is new, so that an etcd down
  // for long logs once, not at every retry; then the next member, after a
  // backoff.
  void Failed(const grpc::Status& status) {
    std::string member;
    members_.Current(&member);
    std::string error = member + ": " + status.error_message();
    bool changed = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      changed = last_error_ != error;
    }
    SetError(error);
    if (changed) {
      LogLine("etcd registrar: " + internal::Shown(key_) + ": " + error + "; retrying");
    }
    members_.Advance();
    Alarm(backoff_.Next(), [self = shared_from_this()](bool ok) {
      // Not ok: cancelled by Shutdown.
      if (ok) self->Step();
    });
  }

  // Runs `fn` on the IoLoop after `delay`, with ok false if Shutdown
  // cancels the wait. Returns false, arming nothing, once stopping.
  bool Alarm(std::chrono::milliseconds delay, std::function<void(bool)> fn) {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return false;
    // The previous alarm has fired: one wait at a time, each step started
    // by the one before.
    alarm_ = std::make_unique<grpc::Alarm>();
    alarm_->Set(IoLoop::Get().cq(), std::chrono::system_clock::now() + delay,
                internal::EtcdTag(std::move(fn)));
    return true;
  }

  // Makes `context` the one Stop() cancels and waits for; false when
  // already stopping.
  bool Activate(grpc::ClientContext* context) {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return false;
    active_ = context;
    in_flight_ = true;
    return true;
  }
  void Deactivate() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      active_ = nullptr;
      in_flight_ = false;
    }
    cv_.notify_all();
  }

  bool stopping() const {
    std::lock_guard<std::mutex> lock(mu_);
    return stopping_;
  }

  void SetRegistered() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_ || (registered_ && last_error_.empty())) return;
      registered_ = true;
      last_error_.clear();
    }
    cv_.notify_all();
  }

  void SetError(const std::string& error) {
    std::lock_guard<std::mutex> lock(mu_);
    registered_ = false;
    last_error_ = error;
  }

  const EtcdRegistrarOptions options_;
  const std::string key_;
  const std::string value_;
  EtcdMembers members_;
  const std::chrono::milliseconds keepalive_interval_;
  const std::chrono::milliseconds reply_timeout_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  bool registered_ = false;
  std::string last_error_;
  int64_t granted_ = 0;                    // the latest lease granted, for Shutdown()
  grpc::ClientContext* active_ = nullptr;  // the etcd call in flight
  bool in_flight_ = false;                 // one is
  std::unique_ptr<grpc::Alarm> alarm_;     // the backoff or the wait between keepalives

  // Only the IoLoop thread uses these.
  EtcdBackoff backoff_;
  int64_t lease_ = 0;  // the lease the key is written with; 0: register
  Clock::time_point last_alive_;
};

class EtcdRegistrarImpl final : public EtcdRegistrar {
 public:
  EtcdRegistrarImpl(EtcdRegistrarOptions options, EtcdTarget target)
      : core_(std::make_shared<Core>(std::move(options), std::move(target))) {
    core_->Start();
  }

  ~EtcdRegistrarImpl() override { Shutdown(std::chrono::seconds(2)); }

  bool WaitRegistered(std::chrono::milliseconds timeout) override {
    return core_->WaitRegistered(timeout);
  }
  bool registered() const override { return core_->registered(); }
  std::string last_error() const override { return core_->last_error(); }

  void Shutdown(std::chrono::milliseconds timeout) override {
    // call_once: idempotent, and a concurrent second caller returns only
    // once the first is done.
    std::call_once(shutdown_once_, [this, timeout] { ShutdownOnce(timeout); });
  }

 private:
  void ShutdownOnce(std::chrono::milliseconds timeout) {
    // One deadline, so a dead etcd costs no more than `timeout`.
    const auto deadline = std::chrono::system_clock::now() + timeout;
    const int64_t lease = core_->Stop(deadline);
    // Revoking the lease deletes the key at once (clients drop the server
    // now, not after the TTL), but only if the key is still ours: another
    // registrar that wrote the same address since (a new instance on the
    // same port) put it on its own lease, and a plain delete would remove
    // its registration while its keepalives go on succeeding.
    // No lease granted: no put was ever sent, nothing to remove.
    if (lease == 0) return;
    grpc::Status status = core_->Deregister(lease, deadline);
    if (!status.ok()) {
      LogLine("etcd registrar: could not deregister " + internal::Shown(core_->key()) + " (" +
              status.error_message() + "); it disappears when its lease expires, within " +
              std::to_string(core_->ttl().count()) + " s");
    }
  }

  const std::shared_ptr<Core> core_;
  std::once_flag shutdown_once_;
};

}  // namespace

grpc::Status EtcdRegistrar::Create(EtcdRegistrarOptions options,
                                   std::unique_ptr<EtcdRegistrar>* out) {
  EtcdTarget target;
  grpc::Status status = internal::ParseEtcdTarget(options.target, &target);
  if (!status.ok()) return Invalid(status.error_message());
  status = internal::CheckAddress(options.address);
  if (!status.ok()) return Invalid("address: " + status.error_message());
  // A wildcard means "every interface" to a server and nothing to a client.
  if (internal::IsWildcardAddress(options.address)) {
    return Invalid("address \"" + internal::Shown(options.address) +
                   "\" is a wildcard no client can dial; register the host clients reach");
  }
  if (options.attributes.weight < 1) return Invalid("weight must be 1 or more, got 0");
  for (const char* typed : {"weight", "hash_key"}) {
    if (options.attributes.values.count(typed) != 0) {
      return Invalid(std::string("a free-form value named \"") + typed +
                     "\" would replace the attribute of that name in Metadata");
    }
  }
  if (options.ttl < std::chrono::seconds(1)) {
    return Invalid("ttl must be 1 s or more, got " + std::to_string(options.ttl.count()) + " s");
  }
  if (options.initial_backoff <= std::chrono::milliseconds(0) ||
      options.max_backoff <= std::chrono::milliseconds(0)) {
    return Invalid("the backoff delays must be positive");
  }
  *out = std::make_unique<EtcdRegistrarImpl>(std::move(options), std::move(target));
  return grpc::Status::OK;
}

}  // namespace lbkit
