// The "dns" resolver (c-ares), registered by default under the scheme "dns":
//
//   dns:///host:port                  the system's DNS servers (/etc/resolv.conf)
//   dns://DNS_SERVER:PORT/host:port   this DNS server: an IPv4 or [IPv6] address,
//                                     port 53 when omitted
//
// gRPC's syntax. The port of the name defaults to 443 as in gRPC; an IPv6
// host is bracketed ("dns:///[::1]:50051"). An IP literal host resolves to
// itself without a lookup. A name listed in /etc/hosts resolves from there,
// without a DNS query; "localhost" never reaches a DNS server. Otherwise the
// resolver queries A and AAAA records (with the system's search domains, as
// gRPC does) and reports every address as its own Endpoint, IPv6 ones first,
// so a policy such as round_robin balances across them.
//
// Lookups run on one lbkit thread ("lbkit-dns") shared by every dns resolver
// of the process, never on a channel's work serializer (lbkit's control-plane
// threads, shared by every channel); it exists while at least one dns
// resolver is started. docs/discovery.md has the details.
//
// To change the options, replace the default factory before creating
// channels (channels created earlier keep theirs):
//
//   lbkit::DnsResolverOptions options;
//   options.min_time_between_resolutions = std::chrono::seconds(5);
//   options.enable_service_config = true;
//   grpc::Status status = lbkit::RegisterResolverFactory(
//       lbkit::MakeDnsResolverFactory(options), lbkit::OnDuplicate::kReplace);
//
// Thread-safety: MakeDnsResolverFactory and the factory it returns are
// thread-safe; its resolvers follow the Resolver contract (resolver.h).
#ifndef LBKIT_DNS_RESOLVER_H_
#define LBKIT_DNS_RESOLVER_H_

#include <chrono>
#include <memory>

#include "lbkit/export.h"
#include "lbkit/resolver.h"

namespace lbkit {

struct LBKIT_EXPORT DnsResolverOptions {
  // The least time from the start of one lookup to the start of the next.
  // A re-resolution request sooner than that is deferred to the end of the
  // interval (several collapse into one lookup), never dropped; one made
  // while a lookup is in flight is answered by that lookup. gRPC's
  // grpc.dns_min_time_between_resolutions_ms, with its default. Negative: 0.
  std::chrono::milliseconds min_time_between_resolutions{30000};
  // When positive, a lookup also starts this long after the previous one
  // started (never sooner than min_time_between_resolutions), whether or not
  // the channel asks. 0 (the default, as in gRPC): only on request.
  std::chrono::milliseconds refresh_interval{0};
  // Reads a service config from the TXT records of "_grpc_config.<name>"
  // (gRFC A2). Off by default, as in gRPC. A config that does not parse is
  // reported to the channel, which keeps its last good config, or with none
  // fails calls naming the error (docs/discovery.md).
  bool enable_service_config = false;
  // How long one lookup (its A, AAAA and TXT queries together) may take
  // before it fails as a timeout. Not positive: the default.
  std::chrono::milliseconds query_timeout{10000};
};

// A factory for scheme "dns" with `options`. Never returns null.
//
// Its Create returns INVALID_ARGUMENT naming the problem for a target it
// cannot serve (no host, a bad port, a DNS server that is not an IP
// address, ...); it never blocks or looks anything up.
//
// Its resolvers promise: Start returns at once (the lookup runs on the
// lbkit-dns thread, which calls the listener; an IP literal needs no lookup
// and is reported from Start itself, on the caller's thread); a successful lookup calls
// OnUpdate with one single-address endpoint per address; a failed one (no
// such name, no A or AAAA record, timeout, server failure) calls OnError with
// UNAVAILABLE naming the name, the DNS server and the reason when there are
// no endpoints yet, and otherwise keeps the last good endpoints (the channel
// is not told; the failure is logged) and retries with backoff (1 s, x1.6,
// at most 120 s, never sooner than min_time_between_resolutions). After
// Shutdown returns, the listener is never called again and no lookup of the
// resolver is left running.
LBKIT_EXPORT std::shared_ptr<const ResolverFactory> MakeDnsResolverFactory(
    DnsResolverOptions options = {});

}  // namespace lbkit

#endif  // LBKIT_DNS_RESOLVER_H_
