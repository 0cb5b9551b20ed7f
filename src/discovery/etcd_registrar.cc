// EtcdRegistrar (include/lbkit/etcd.h): one worker thread per registrar runs
// grant -> put -> keepalive, and starts over when the lease is lost. Every
// blocking step of the worker is either a condition-variable wait or an etcd
// call whose ClientContext is published in `active_`, so Shutdown() can wake
// it at once (notify, TryCancel) whatever it is doing.
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

#include <grpcpp/client_context.h>
#include <grpcpp/completion_queue.h>

#include "core/address.h"
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

class EtcdRegistrarImpl final : public EtcdRegistrar {
 public:
  EtcdRegistrarImpl(EtcdRegistrarOptions options, EtcdTarget target)
      : options_(std::move(options)),
        key_(internal::EtcdEndpointKey(target.service, options_.address)),
        value_(internal::EncodeEtcdEndpoint(options_.address, options_.attributes)),
        members_(std::move(target.members), options_.max_backoff),
        // etcd's own clients keep alive at a third of the TTL: two requests
        // may be lost before the lease expires.
        keepalive_interval_(std::max<std::chrono::milliseconds>(
            std::chrono::duration_cast<std::chrono::milliseconds>(options_.ttl) / 3,
            std::chrono::milliseconds(100))) {
    worker_ = std::thread([this] { Run(); });
  }

  ~EtcdRegistrarImpl() override { Shutdown(std::chrono::seconds(2)); }

  bool WaitRegistered(std::chrono::milliseconds timeout) override {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, timeout, [this] { return registered_ || stopping_; });
    return registered_;
  }

  bool registered() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return registered_;
  }

  std::string last_error() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return last_error_;
  }

  void Shutdown(std::chrono::milliseconds timeout) override {
    // call_once: idempotent, and a concurrent second caller returns only
    // once the first is done.
    std::call_once(shutdown_once_, [this, timeout] { ShutdownOnce(timeout); });
  }

 private:
  void ShutdownOnce(std::chrono::milliseconds timeout) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
      if (active_ != nullptr) active_->TryCancel();
    }
    cv_.notify_all();
    if (worker_.joinable()) worker_.join();
    int64_t lease = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      lease = lease_;
      registered_ = false;
    }
    // Revoking the lease deletes the key at once (clients drop the server
    // now, not after the TTL), but only if the key is still ours: another
    // registrar that wrote the same address since (a new instance on the
    // same port) put it on its own lease, and a plain delete would remove
    // its registration while its keepalives go on succeeding. One deadline,
    // so a dead etcd costs no more than `timeout`.
    // No lease granted: no put was ever sent, nothing to remove.
    if (lease == 0) return;
    const auto deadline = std::chrono::system_clock::now() + timeout;
    grpc::Status status = Deregister(lease, deadline);
    if (!status.ok()) {
      LogLine("etcd registrar: could not deregister " + internal::Shown(key_) + " (" +
              status.error_message() + "); it disappears when its lease expires, within " +
              std::to_string(options_.ttl.count()) + " s");
    }
  }

  grpc::Status Deregister(int64_t lease, std::chrono::system_clock::time_point deadline) {
    grpc::Status status;
    // Each member once: one being down must not keep the key registered.
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

  // The worker: registers, keeps the lease alive, starts over when it is
  // lost, until Shutdown().
  void Run() {
    EtcdBackoff backoff(options_.initial_backoff, options_.max_backoff);
    int64_t lease = 0;
    Clock::time_point last_alive;
    while (!stopping()) {
      // Past the TTL without a keepalive, etcd has dropped the lease (and
      // the key with it): only a new one registers the server again.
      if (lease != 0 && Clock::now() - last_alive >= options_.ttl) {
        LogLine("etcd registrar: no keepalive for " + internal::Shown(key_) + " in " +
                std::to_string(options_.ttl.count()) + " s; registering again");
        lease = 0;
      }
      if (lease == 0) {
        grpc::Status status = Register(&lease);
        if (!status.ok()) {
          Failed(status);
          Backoff(&backoff);
          continue;
        }
        last_alive = Clock::now();
      }
      bool lost = false;
      grpc::Status status = KeepAlive(lease, &last_alive, &backoff, &lost);
      if (stopping()) break;
      if (lost) {
        LogLine("etcd registrar: lease " + LeaseHex(lease) + " of " + internal::Shown(key_) +
                " is gone; registering again");
        SetError("lease " + LeaseHex(lease) + " expired or was revoked");
        lease = 0;
        continue;
      }
      Failed(status);
      Backoff(&backoff);
    }
  }

  // Grants a lease and writes the key with it.
  grpc::Status Register(int64_t* lease) {
    auto channel = members_.Current();
    etcdserverpb::LeaseGrantResponse granted;
    {
      etcdserverpb::LeaseGrantRequest request;
      request.set_ttl(options_.ttl.count());
      grpc::Status status = Unary([&](grpc::ClientContext* context) {
        return etcdserverpb::Lease::NewStub(channel)->LeaseGrant(context, request, &granted);
      });
      if (!status.ok()) return status;
      if (!granted.error().empty()) {
        return grpc::Status(grpc::StatusCode::UNAVAILABLE, "lease grant: " + granted.error());
      }
    }
    {
      // Published before the put: should Shutdown() come now, it revokes
      // this lease, which removes a key the put may still write.
      std::lock_guard<std::mutex> lock(mu_);
      lease_ = granted.id();
    }
    etcdserverpb::PutRequest request;
    request.set_key(key_);
    request.set_value(value_);
    request.set_lease(granted.id());
    etcdserverpb::PutResponse response;
    grpc::Status status = Unary([&](grpc::ClientContext* context) {
      return etcdserverpb::KV::NewStub(channel)->Put(context, request, &response);
    });
    if (!status.ok()) return status;
    *lease = granted.id();
    std::string member;
    members_.Current(&member);
    LogLine("etcd registrar: registered " + internal::Shown(key_) + " with lease " +
            LeaseHex(*lease) + " (ttl " + std::to_string(options_.ttl.count()) + " s) on " +
            member);
    SetRegistered();
    return grpc::Status::OK;
  }

  // Keeps `lease` alive on one stream until it fails (returned), the lease
  // is gone (*lost), or Shutdown(). Each answer is awaited about one
  // keepalive interval, so a member that hangs is left in time to keep the
  // lease alive through another one.
  grpc::Status KeepAlive(int64_t lease, Clock::time_point* last_alive, EtcdBackoff* backoff,
                         bool* lost) {
    grpc::CompletionQueue cq;
    grpc::ClientContext context;
    if (!Publish(&context)) return grpc::Status::CANCELLED;
    auto stub = etcdserverpb::Lease::NewStub(members_.Current());
    auto stream = stub->PrepareAsyncLeaseKeepAlive(&context, &cq);
    // One operation in flight at a time, each awaited here: on a timeout the
    // stream is cancelled and the operation still drained before `cq` and
    // `context` go away.
    auto await = [&](void* tag, std::chrono::system_clock::time_point deadline) {
      void* got = nullptr;
      bool ok = false;
      auto result = cq.AsyncNext(&got, &ok, deadline);
      if (result == grpc::CompletionQueue::TIMEOUT) {
        context.TryCancel();
        cq.Next(&got, &ok);
        return false;
      }
      return result == grpc::CompletionQueue::GOT_EVENT && got == tag && ok;
    };
    // A second at least, so that a busy etcd is not taken for a hung one.
    const auto reply_timeout =
        std::max<std::chrono::milliseconds>(keepalive_interval_, std::chrono::seconds(1));
    auto reply_deadline = [&] { return std::chrono::system_clock::now() + reply_timeout; };
    std::string failure = "keepalive stream closed";
    stream->StartCall(reinterpret_cast<void*>(1));
    bool open =
        await(reinterpret_cast<void*>(1), std::chrono::system_clock::now() + kRequestTimeout);
    while (open) {
      etcdserverpb::LeaseKeepAliveRequest request;
      request.set_id(lease);
      stream->Write(request, reinterpret_cast<void*>(2));
      if (!await(reinterpret_cast<void*>(2), reply_deadline())) break;
      etcdserverpb::LeaseKeepAliveResponse response;
      stream->Read(&response, reinterpret_cast<void*>(3));
      if (!await(reinterpret_cast<void*>(3), reply_deadline())) {
        failure = "no keepalive answer in " + std::to_string(reply_timeout.count()) + " ms";
        break;
      }
      if (response.ttl() <= 0) {
        *lost = true;
        break;
      }
      *last_alive = Clock::now();
      backoff->Reset();
      SetRegistered();
      if (!Sleep(keepalive_interval_)) break;
    }
    // Finish reports the stream's status (and frees it) once cancelled.
    context.TryCancel();
    grpc::Status status;
    stream->Finish(&status, reinterpret_cast<void*>(4));
    void* got = nullptr;
    bool ok = false;
    cq.Next(&got, &ok);
    cq.Shutdown();
    while (cq.Next(&got, &ok)) {
    }
    Unpublish();
    if (*lost) return grpc::Status::OK;
    if (status.ok() || status.error_code() == grpc::StatusCode::CANCELLED) {
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, failure);
    }
    return status;
  }

  // Runs one unary call with kRequestTimeout, cancellable by Shutdown().
  template <typename Call>
  grpc::Status Unary(const Call& call) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + kRequestTimeout);
    if (!Publish(&context)) return grpc::Status::CANCELLED;
    grpc::Status status = call(&context);
    Unpublish();
    return status;
  }

  // Makes `context` the one Shutdown() cancels; false when already stopping.
  bool Publish(grpc::ClientContext* context) {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return false;
    active_ = context;
    return true;
  }
  void Unpublish() {
    std::lock_guard<std::mutex> lock(mu_);
    active_ = nullptr;
  }

  bool stopping() const {
    std::lock_guard<std::mutex> lock(mu_);
    return stopping_;
  }

  // Waits `delay` or until Shutdown(); returns false on Shutdown().
  bool Sleep(std::chrono::milliseconds delay) {
    std::unique_lock<std::mutex> lock(mu_);
    return !cv_.wait_for(lock, delay, [this] { return stopping_; });
  }

  void Backoff(EtcdBackoff* backoff) {
    members_.Advance();
    Sleep(backoff->Next());
  }

  void SetRegistered() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (registered_ && last_error_.empty()) return;
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

  // A failed etcd call: logged when the error is new, so that an etcd down
  // for long logs once, not at every retry.
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
  }

  const EtcdRegistrarOptions options_;
  const std::string key_;
  const std::string value_;
  EtcdMembers members_;
  const std::chrono::milliseconds keepalive_interval_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  bool registered_ = false;
  std::string last_error_;
  int64_t lease_ = 0;                      // the latest granted, for Shutdown()
  grpc::ClientContext* active_ = nullptr;  // the worker's etcd call in flight
  std::once_flag shutdown_once_;
  std::thread worker_;
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
