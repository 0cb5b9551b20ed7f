// What the etcd resolver and the etcd registrar share: the target syntax, the
// key layout and value format of etcd's Go naming package, and the connection
// to an etcd cluster (one plain gRPC channel per member, never an lbkit
// channel, rotated on failure with backoff).
#ifndef LBKIT_SRC_DISCOVERY_ETCD_COMMON_H_
#define LBKIT_SRC_DISCOVERY_ETCD_COMMON_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include <functional>

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>
#include <grpcpp/support/async_unary_call.h>
#include <grpcpp/support/status.h>

#include "core/io_loop.h"
#include "lbkit/resolver.h"

namespace lbkit {
namespace internal {

// "etcd://HOST:PORT,HOST:PORT/SERVICE": the etcd members (at least one) and
// the service name, whose endpoints are the keys under "SERVICE/".
struct EtcdTarget {
  std::vector<std::string> members;
  std::string service;
  std::string prefix() const { return service + "/"; }
};

// Parses `target` (scheme "etcd"). INVALID_ARGUMENT naming the problem for no
// member, a bad member address (CheckAddress's rules; a port is required), an
// empty service, or a service with a control byte. Thread-safe.
grpc::Status ParseEtcdTarget(const Target& target, EtcdTarget* out);
// Parses a target given as text ("etcd://..."); the same rules.
grpc::Status ParseEtcdTarget(const std::string& uri, EtcdTarget* out);

// The range_end that makes [prefix, range_end) every key starting with
// `prefix` (etcd's convention: the prefix with its last byte below 0xff
// incremented; "\0" for all keys when there is none).
std::string PrefixRangeEnd(const std::string& prefix);

// The key an endpoint address is registered under: "SERVICE/ADDR".
std::string EtcdEndpointKey(const std::string& service, const std::string& address);

// The value for an address: the JSON that etcd's Go naming package writes,
// {"Op":0,"Addr":"host:port","Metadata":{...}}, the metadata holding the
// attributes ("weight" as a number when it is not 1, "hash_key", then the
// free-form values); no "Metadata" when there are none.
std::string EncodeEtcdEndpoint(const std::string& address, const EndpointAttributes& attributes);

// A decoded value. `remove` is set for {"Op":1} (the Go package's Delete).
struct EtcdEndpointValue {
  bool remove = false;
  Endpoint endpoint;
};

// Decodes a value written by EncodeEtcdEndpoint or by Go (etcd's naming or
// endpoints package: "Op" optional, 0 add and 1 delete; "Addr" required;
// "Metadata" optional: an object's "weight" (a whole number 1..4294967295,
// or such a number as a string) and "hash_key" (a string) become those
// attributes and every other member a free-form value (strings as they are,
// anything else as its JSON); metadata that is not an object or null is kept
// whole as the value "metadata"). INVALID_ARGUMENT naming the problem for
// anything else: not JSON, not an object, no or a bad "Addr", a bad "Op" or
// weight. Thread-safe; never throws.
grpc::Status DecodeEtcdEndpoint(const std::string& value, EtcdEndpointValue* out);

// A tag for one asynchronous etcd operation on the IoLoop: runs `fn` there
// when the operation completes, then deletes itself. Returned as the
// IoLoop::Tag* that the loop casts gRPC's void* back to. The resolver's and
// the registrar's state machines capture a shared_ptr to their state in
// `fn`, so that it lives as long as any of its operations is in flight.
inline IoLoop::Tag* EtcdTag(std::function<void(bool ok)> fn) {
  return new FunctionTag(std::move(fn));
}

// One asynchronous unary etcd call: what must live until it completes (the
// state machines hold it by shared_ptr in the call's tag).
template <typename Response>
struct EtcdUnaryCall {
  std::shared_ptr<grpc::Channel> channel;
  std::string member;  // the address of the member called
  grpc::ClientContext context;
  Response response;
  grpc::Status status;
  std::unique_ptr<grpc::ClientAsyncResponseReader<Response>> reader;
};

// Exponential backoff with jitter, as gRPC's connection backoff: starts at
// `initial`, grows by 1.6 per failure up to `max`, each delay randomized by
// +-20%. Not thread-safe.
class EtcdBackoff {
 public:
  EtcdBackoff(std::chrono::milliseconds initial, std::chrono::milliseconds max);
  std::chrono::milliseconds Next();
  void Reset();

 private:
  std::chrono::milliseconds initial_;
  std::chrono::milliseconds max_;
  double current_ms_;
  std::minstd_rand random_;
};

// The members of one etcd cluster and a gRPC channel to each, made on first
// use. The channels are plain gRPC channels (never through lbkit), with
// reconnection backoff bounded by `max_backoff` so a restarted member is
// found again quickly, keepalive so a silent one is noticed, and no limit on
// the size of a received message (a large Range).
// Thread-safe.
class EtcdMembers {
 public:
  EtcdMembers(std::vector<std::string> members, std::chrono::milliseconds max_backoff);
  // The member to use now, and its channel.
  std::shared_ptr<grpc::Channel> Current(std::string* address = nullptr);
  // The member in use failed: the next one becomes current, and the failed
  // one gets a new channel when next used (gRPC's reconnect backoff and
  // state start afresh).
  void Advance();
  size_t size() const { return members_.size(); }

 private:
  const std::vector<std::string> members_;
  const std::chrono::milliseconds max_backoff_;
  std::mutex mu_;
  size_t current_ = 0;
  std::vector<std::shared_ptr<grpc::Channel>> channels_;
};

}  // namespace internal
}  // namespace lbkit

#endif  // LBKIT_SRC_DISCOVERY_ETCD_COMMON_H_
