// Resolvers turn a channel's target into endpoints and, optionally, a service
// config. lbkit ships "manual" (fed by the program), "static" (addresses in
// the target) and "dns" (a name looked up in DNS; dns_resolver.h). Others can
// be registered by scheme.
//
// Thread-safety: ManualResolver's public methods and ResolverListener's
// methods may be called from any thread. Resolver's own methods are called by
// the channel, one at a time, on its work serializer (balancer.h says which
// threads run it: lbkit's, shared by every channel in the process), so they
// must not block.
#ifndef LBKIT_RESOLVER_H_
#define LBKIT_RESOLVER_H_

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <grpcpp/support/status.h>

#include "lbkit/export.h"

namespace lbkit {

// What a resolver says about an endpoint beyond its addresses; a policy reads
// it (a weighted policy the weight, ring_hash the hash key, a locality-aware
// one values such as "zone"). lbkit itself only checks and carries it.
//
// Requires, from a resolver: weight >= 1. An endpoint with weight 0 is a bad
// endpoint: the channel drops it and logs why, as it does a bad address.
// Promises, to a policy: every endpoint it receives has weight >= 1, and the
// attributes the resolver set, unchanged.
//
// In a static target they follow an address after ';' as key=value pairs
// (see CreateChannel in channel.h): "static:///10.0.0.1:50051;weight=3;zone=eu".
struct LBKIT_EXPORT EndpointAttributes {
  uint32_t weight = 1;                        // relative weight; 1 when the resolver says nothing
  std::string hash_key;                       // the key ring_hash places it by; empty: none
  std::map<std::string, std::string> values;  // anything else, free-form ("zone" -> "eu")

  bool operator==(const EndpointAttributes& other) const {
    return weight == other.weight && hash_key == other.hash_key && values == other.values;
  }
  bool operator!=(const EndpointAttributes& other) const { return !(*this == other); }
};

// One logical backend: one or more addresses ("host:port", "[v6]:port",
// "unix:/path") that all reach it, and its attributes. pick_first tries the
// addresses in order.
//
// Endpoint{{"a:1"}} and Endpoint{{"a:1"}, attributes} both work: attributes
// default to weight 1 and nothing else.
//
// Two endpoints are equal when their addresses (in order) and attributes are.
// EndpointSharding identifies an endpoint by its set of addresses alone (see
// EndpointKey in endpoint_sharding.h): reordering its addresses or changing
// its attributes updates the same child, with its connections.
struct LBKIT_EXPORT Endpoint {
  std::vector<std::string> addresses;
  EndpointAttributes attributes{};  // `{}`: no -Wmissing-field-initializers for Endpoint{{"a:1"}}

  bool operator==(const Endpoint& other) const {
    return addresses == other.addresses && attributes == other.attributes;
  }
  bool operator!=(const Endpoint& other) const { return !(*this == other); }
};

// What a resolver reports: the endpoints, and a service config as gRPC's JSON
// (empty: none, the channel then uses its default, then pick_first).
struct LBKIT_EXPORT ResolverState {
  std::vector<Endpoint> endpoints;
  std::string service_config;
};

// The parsed target of a channel: "scheme://authority/endpoint" or
// "scheme:endpoint".
struct LBKIT_EXPORT Target {
  std::string scheme;
  std::string authority;
  std::string endpoint;  // the path without its leading '/'
  std::string uri;       // the target as given
};

// Parses `uri`. Requires nothing. Returns INVALID_ARGUMENT naming the problem
// when `uri` has no scheme or an empty one.
LBKIT_EXPORT grpc::Status ParseTarget(const std::string& uri, Target* target);

// The channel's side of a resolver. Every method may be called from any thread
// and returns at once: the update is applied later on the channel's work
// serializer. Calls after the channel shut down are ignored.
class LBKIT_EXPORT ResolverListener {
 public:
  virtual ~ResolverListener() = default;
  // A new state; replaces the previous one entirely.
  virtual void OnUpdate(ResolverState state) = 0;
  // Resolution failed. The channel keeps its last good state if it has one;
  // otherwise it goes to TRANSIENT_FAILURE with `status`.
  virtual void OnError(grpc::Status status) = 0;
};

// A name resolver. The channel calls Start once, RequestReresolution any
// number of times, then Shutdown once; never two of them at the same time, and
// each on the channel's work serializer. None may block: a resolver that
// looks names up or talks to a registry does it on a thread of its own or
// asynchronously (lbkit's dns resolver has its lbkit-dns thread; etcd's runs
// on lbkit's I/O thread) and reports through the listener. Shutdown may wait
// for the resolver's own work in progress, for instance a listener call
// under way, which never blocks.
class LBKIT_EXPORT Resolver {
 public:
  virtual ~Resolver() = default;
  // Starts resolving. `listener` stays valid until Shutdown returns; the
  // resolver may report through it from any thread until then.
  virtual void Start(std::shared_ptr<ResolverListener> listener) = 0;
  // A hint that the current state may be stale (a connection dropped).
  virtual void RequestReresolution() {}
  // Stops reporting. After it returns the resolver never uses the listener.
  virtual void Shutdown() = 0;
};

// Builds resolvers for one scheme.
class LBKIT_EXPORT ResolverFactory {
 public:
  virtual ~ResolverFactory() = default;
  virtual std::string scheme() const = 0;
  // Builds a resolver for `target` (whose scheme is scheme()). Returns
  // INVALID_ARGUMENT with a message naming the problem for a target it cannot
  // serve; never crashes on bad input.
  virtual grpc::Status Create(const Target& target, std::shared_ptr<Resolver>* resolver) const = 0;
};

// What a Register* function does when the name (or scheme) is taken already,
// built-ins included: refuse with ALREADY_EXISTS (the default, so that two
// libraries cannot silently replace each other's entry), or replace it.
enum class OnDuplicate { kRefuse, kReplace };

// Registers `factory` for factory->scheme(). Returns INVALID_ARGUMENT for a
// null factory or a scheme that no target could name (a scheme is a letter
// then letters, digits, '+', '-' or '.', as ParseTarget reads it; schemes are
// case-sensitive), and ALREADY_EXISTS naming the scheme when it is registered
// already, unless `on_duplicate` is OnDuplicate::kReplace. Thread-safe.
// Channels already created keep the resolver they were built with; only
// later CreateChannel calls see the new factory.
[[nodiscard]] LBKIT_EXPORT grpc::Status RegisterResolverFactory(
    std::shared_ptr<const ResolverFactory> factory,
    OnDuplicate on_duplicate = OnDuplicate::kRefuse);
// The factory for `scheme`, or nullptr. Thread-safe.
LBKIT_EXPORT std::shared_ptr<const ResolverFactory> FindResolverFactory(const std::string& scheme);
// The registered schemes, sorted. Thread-safe.
LBKIT_EXPORT std::vector<std::string> RegisteredResolverSchemes();

// A resolver fed by the program, like gRPC-Go's resolver/manual. Give it to
// ChannelOptions::resolver. One channel at a time may use it.
class LBKIT_EXPORT ManualResolver : public Resolver {
 public:
  static std::shared_ptr<ManualResolver> Create();

  // Sets the state the channel sees when it starts. Called after the channel
  // has started (channel creation starts it on the channel's work serializer,
  // usually on another thread, so this can happen sooner than it looks), it is
  // delivered as UpdateState would, rather than lost. Thread-safe.
  void SetInitialState(ResolverState state);
  // Reports a new state: to the channel if started, else as the initial state.
  // Thread-safe.
  void UpdateState(ResolverState state);
  // Reports a resolution error to the channel (ignored before Start).
  // Thread-safe.
  void ReportError(grpc::Status status);
  // How many times the channel asked for re-resolution. Thread-safe.
  int reresolution_requests() const;

  void Start(std::shared_ptr<ResolverListener> listener) override;
  void RequestReresolution() override;
  void Shutdown() override;

 private:
  ManualResolver() = default;

  mutable std::mutex mu_;
  std::shared_ptr<ResolverListener> listener_;  // set between Start and Shutdown
  bool has_initial_state_ = false;
  ResolverState initial_state_;
  int reresolution_requests_ = 0;
};

}  // namespace lbkit

#endif  // LBKIT_RESOLVER_H_
