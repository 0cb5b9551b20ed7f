// Service discovery through etcd (its v3 gRPC API; etcd 3.4 and later):
// a resolver for "etcd://" targets and a registrar a server uses to announce
// itself. Both use the key layout and value of etcd's Go naming package, so
// Go services and lbkit programs find each other:
//
//   key    SERVICE/ADDR                     e.g. "echo/10.0.0.5:50051"
//   value  {"Op":0,"Addr":"ADDR","Metadata":{"weight":3,"hash_key":"k","zone":"eu"}}
//
// Metadata maps onto EndpointAttributes: "weight" (a whole number 1..2^32-1,
// or one as a string), "hash_key" (a string), every other member a free-form
// value. See docs/discovery.md.
//
// Connections to etcd are plain gRPC channels, one per listed member, never
// an lbkit channel: discovery does not depend on the channel it serves.
#ifndef LBKIT_ETCD_H_
#define LBKIT_ETCD_H_

#include <chrono>
#include <memory>
#include <string>

#include <grpcpp/support/status.h>

#include "lbkit/export.h"
#include "lbkit/resolver.h"

namespace lbkit {

// The "etcd" resolver: "etcd://HOST:PORT[,HOST:PORT...]/SERVICE".
//
// Lists the keys under "SERVICE/" (one Range), then watches them from the
// next revision: a PUT adds or changes an endpoint, a DELETE (or a value with
// "Op":1) removes it. Keys whose value cannot be read are skipped and logged.
// A compacted watch lists again. A lost etcd connection is retried with
// backoff across the listed members and resumes from the last revision seen;
// the channel keeps its last endpoints meanwhile. Until the first list
// succeeds, the channel is in TRANSIENT_FAILURE with the last etcd error.
struct LBKIT_EXPORT EtcdResolverOptions {
  // Delay before retrying after a failure: starts at initial_backoff, grows
  // by 1.6 per failure up to max_backoff, each randomized by +-20%.
  std::chrono::milliseconds initial_backoff{100};
  std::chrono::milliseconds max_backoff{5000};
  // Deadline of each unary etcd call (the Range).
  std::chrono::milliseconds request_timeout{5000};
  // A delay or timeout that is not positive counts as its default; a
  // max_backoff below initial_backoff as initial_backoff.
};

// A factory for "etcd" with `options`. The built-in one (registered by
// default) uses EtcdResolverOptions{}; replace it with
// RegisterResolverFactory(MakeEtcdResolverFactory(options), OnDuplicate::kReplace).
// Thread-safe.
LBKIT_EXPORT std::shared_ptr<const ResolverFactory> MakeEtcdResolverFactory(
    EtcdResolverOptions options = {});

struct LBKIT_EXPORT EtcdRegistrarOptions {
  // "etcd://HOST:PORT[,HOST:PORT...]/SERVICE": where to register, under which
  // service.
  std::string target;
  // The address clients reach this server at ("host:port", "[v6]:port"; not
  // a wildcard such as 0.0.0.0): the key is "SERVICE/address".
  std::string address;
  // Written as the value's Metadata; weight >= 1, and no free-form value
  // named "weight" or "hash_key" (those are the typed fields).
  EndpointAttributes attributes;
  // The lease's time to live: a server that dies without deregistering
  // disappears from clients this long after its last keepalive. 1 s or more.
  std::chrono::seconds ttl{10};
  // Retry delays after a failure, as in EtcdResolverOptions.
  std::chrono::milliseconds initial_backoff{100};
  std::chrono::milliseconds max_backoff{5000};
};

// Registers one address under a service for as long as it lives: grants a
// lease, writes the key with it, keeps the lease alive on a stream (every
// ttl/3), and starts over (new lease, key written again) when the lease is
// lost or etcd was unreachable for longer than the ttl. Shutdown() revokes
// the lease, which deletes the key with it, so clients drop the server at
// once; a key another registrar wrote since (a new instance on the same
// address) is on that registrar's lease and stays.
//
// Thread-safety: every method may be called from any thread, except that
// Shutdown() and the destructor must not be called on lbkit's I/O thread (from
// a policy, or from a relayed call's interceptor or done-callback): the
// registrar's calls complete on that thread, so Shutdown may wait there for
// up to its whole timeout, stalling lbkit's I/O meanwhile, and then fail to
// revoke the lease (the key stays until the lease expires).
class LBKIT_EXPORT EtcdRegistrar {
 public:
  // Checks `options` and starts registering in the background; returns at
  // once (registration may take longer: see WaitRegistered). Returns
  // INVALID_ARGUMENT naming the problem for a bad target, address,
  // attributes (weight 0) or ttl; never throws.
  static grpc::Status Create(EtcdRegistrarOptions options, std::unique_ptr<EtcdRegistrar>* out);

  // Shutdown(), then frees everything.
  virtual ~EtcdRegistrar() = default;

  // Waits until the key is written with a live lease, or `timeout` passes.
  // Returns whether it is.
  virtual bool WaitRegistered(std::chrono::milliseconds timeout) = 0;
  // Whether the key is written and the lease alive, as far as this process
  // knows.
  virtual bool registered() const = 0;
  // The last error from etcd, "" when the last operation succeeded.
  virtual std::string last_error() const = 0;
  // Stops every background activity, then revokes the lease (which deletes
  // the key, if it is still on it) within `timeout`. Idempotent; a failure
  // to reach etcd is logged, and the key then disappears with its lease.
  virtual void Shutdown(std::chrono::milliseconds timeout = std::chrono::seconds(2)) = 0;

 protected:
  EtcdRegistrar() = default;
};

}  // namespace lbkit

#endif  // LBKIT_ETCD_H_
