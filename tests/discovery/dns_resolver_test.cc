// The dns resolver: targets, lookups against a fake DNS server on 127.0.0.1,
// re-resolution and its rate limit, errors, service config from TXT records
// (gRFC A2), shutdown. Nothing here talks to a DNS server other than the
// fake one: a "dns:///" (system resolver) target names an IP literal or
// localhost only, which never reach a DNS server.

#include <set>

#include <grpcpp/client_context.h>
#include <gtest/gtest.h>

#include "common/test_backend.h"
#include "common/thread_count.h"
#include "discovery/fake_dns_server.h"
#include "lbkit/channel.h"
#include "lbkit/dns_resolver.h"
#include "resolvers/dns.h"

namespace {

using namespace std::chrono_literals;
using grpc::examples::echo::Echo;
using lbkit_test::Echo;
using lbkit_test::FakeDnsServer;
using lbkit_test::WaitFor;
using Type = FakeDnsServer::Type;

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// What a resolver reported.
class RecordingListener final : public lbkit::ResolverListener {
 public:
  void OnUpdate(lbkit::ResolverState state) override {
    std::lock_guard<std::mutex> lock(mu_);
    updates_.push_back(std::move(state));
  }
  void OnError(grpc::Status status) override {
    std::lock_guard<std::mutex> lock(mu_);
    errors_.push_back(std::move(status));
  }
  size_t updates() const {
    std::lock_guard<std::mutex> lock(mu_);
    return updates_.size();
  }
  size_t errors() const {
    std::lock_guard<std::mutex> lock(mu_);
    return errors_.size();
  }
  lbkit::ResolverState last_update() const {
    std::lock_guard<std::mutex> lock(mu_);
    return updates_.empty() ? lbkit::ResolverState{} : updates_.back();
  }
  std::string last_error() const {
    std::lock_guard<std::mutex> lock(mu_);
    return errors_.empty() ? "" : errors_.back().error_message();
  }
  // The last update's endpoints, each as its addresses joined by '|'.
  std::vector<std::string> endpoints() const {
    std::vector<std::string> result;
    for (const lbkit::Endpoint& endpoint : last_update().endpoints) {
      std::string joined;
      for (const std::string& address : endpoint.addresses) {
        joined += (joined.empty() ? "" : "|") + address;
      }
      result.push_back(joined);
    }
    return result;
  }

 private:
  mutable std::mutex mu_;
  std::vector<lbkit::ResolverState> updates_;
  std::vector<grpc::Status> errors_;
};

// A dns resolver started on a fresh listener; shut down when it goes.
struct Started {
  std::shared_ptr<lbkit::Resolver> resolver;
  std::shared_ptr<RecordingListener> listener = std::make_shared<RecordingListener>();
  ~Started() {
    if (resolver != nullptr) resolver->Shutdown();
  }
};

std::unique_ptr<Started> StartDns(const std::string& uri,
                                  const lbkit::DnsResolverOptions& options) {
  auto started = std::make_unique<Started>();
  lbkit::Target target;
  EXPECT_TRUE(lbkit::ParseTarget(uri, &target).ok());
  grpc::Status status = lbkit::MakeDnsResolverFactory(options)->Create(target, &started->resolver);
  EXPECT_TRUE(status.ok()) << status.error_message();
  if (started->resolver != nullptr) started->resolver->Start(started->listener);
  return started;
}

// A dns target whose DNS server is `dns`.
std::string Via(const FakeDnsServer& dns, const std::string& name) {
  return "dns://" + dns.authority() + "/" + name;
}

lbkit::DnsResolverOptions Quick() {
  lbkit::DnsResolverOptions options;
  options.min_time_between_resolutions = 50ms;
  options.query_timeout = 2s;
  return options;
}

// True while the process has a thread named lbkit-dns.
bool DnsThreadRunning() { return lbkit_test::CountThreadsNamed("lbkit-dns") > 0; }

// Channels built with other dns options replace the default factory; the
// fixture puts the default back.
class DnsChannel : public ::testing::Test {
 protected:
  void TearDown() override {
    ASSERT_TRUE(lbkit::RegisterResolverFactory(lbkit::MakeDnsResolverFactory(),
                                               lbkit::OnDuplicate::kReplace)
                    .ok());
  }
  static void UseOptions(const lbkit::DnsResolverOptions& options) {
    ASSERT_TRUE(lbkit::RegisterResolverFactory(lbkit::MakeDnsResolverFactory(options),
                                               lbkit::OnDuplicate::kReplace)
                    .ok());
  }
  static std::shared_ptr<lbkit::Channel> Channel(const std::string& target,
                                                 const std::string& service_config = "") {
    lbkit::ChannelOptions options;
    options.default_service_config = service_config;
    grpc::Status status;
    auto channel =
        lbkit::CreateChannel(target, grpc::InsecureChannelCredentials(), options, &status);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return channel;
  }
};

// An echo server on `ip`:`port` whose replies say "(from ip:port)".
struct EchoServer {
  EchoServer(const std::string& ip, int port) : service(ip + ":" + std::to_string(port)) {
    std::string error;
    int bound = 0;
    server = lbkit_example::StartEchoServer(service.label(), &service, &bound, &error);
    EXPECT_NE(server, nullptr) << error;
  }
  ~EchoServer() {
    if (server != nullptr) server->Shutdown(std::chrono::system_clock::now());
  }
  lbkit_example::EchoService service;
  std::unique_ptr<grpc::Server> server;
};

// --- targets

TEST(DnsTarget, DefaultsAreGrpcs) {
  auto parse = [](const std::string& uri) {
    lbkit::Target target;
    EXPECT_TRUE(lbkit::ParseTarget(uri, &target).ok());
    lbkit::internal::DnsTarget parsed;
    grpc::Status status = lbkit::internal::ParseDnsTarget(target, &parsed);
    EXPECT_TRUE(status.ok()) << uri << ": " << status.error_message();
    return parsed;
  };
  auto name = parse("dns:///api.example.com");
  EXPECT_EQ(name.host, "api.example.com");
  EXPECT_EQ(name.port, "443");
  EXPECT_EQ(name.address, "") << "a name is looked up";
  EXPECT_EQ(name.server, "") << "the system's servers";
  auto with_server = parse("dns://10.1.2.3/api.example.com:50051");
  EXPECT_EQ(with_server.port, "50051");
  EXPECT_EQ(with_server.server, "10.1.2.3:53");
  EXPECT_EQ(parse("dns://[::1]:5353/a:1").server, "[::1]:5353");
  EXPECT_EQ(parse("dns:///10.0.0.7:80").address, "10.0.0.7:80");
  EXPECT_EQ(parse("dns:///[2001:db8::1]:80").address, "[2001:db8::1]:80");
  EXPECT_EQ(parse("dns:///2001:db8::1").address, "[2001:db8::1]:443") << "gRPC's bare IPv6";
}

TEST(DnsTarget, BadTargetsAreRejectedNamingTheProblem) {
  auto factory = lbkit::FindResolverFactory("dns");
  ASSERT_NE(factory, nullptr) << "registered by default";
  EXPECT_EQ(factory->scheme(), "dns");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"dns:///", "no host name"},
      {"dns://", "no host name"},
      {"dns:////a.test:1", "one slash too many"},
      {"dns:///a.test:", "empty port"},
      {"dns:///a.test:0", "port must be a number from 1 to 65535"},
      {"dns:///a.test:65536", "port must be a number from 1 to 65535"},
      {"dns:///a.test:http", "port must be a number from 1 to 65535"},
      {"dns:///a b.test:1", "character no host name has"},
      {"dns:///[::1:1", "'[' without ']'"},
      {"dns:///[not-v6]:1", "not an IPv6 address"},
      {"dns://dns.example.com/a.test:1", "is not an IP address"},
      {"dns://10.0.0.1:0/a.test:1", "port must be a number from 1 to 65535"},
      {"dns://10.0.0.1:/a.test:1", "empty port"},
  };
  for (const auto& [uri, why] : cases) {
    lbkit::Target target;
    ASSERT_TRUE(lbkit::ParseTarget(uri, &target).ok()) << uri;
    std::shared_ptr<lbkit::Resolver> resolver;
    grpc::Status status = factory->Create(target, &resolver);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << uri;
    EXPECT_TRUE(Contains(status.error_message(), why)) << uri << ": " << status.error_message();
    EXPECT_TRUE(Contains(status.error_message(), "\"" + uri + "\"")) << status.error_message();
    EXPECT_EQ(resolver, nullptr);
  }
  grpc::Status status;
  auto channel =
      lbkit::CreateChannel("dns:///a.test:0", grpc::InsecureChannelCredentials(), {}, &status);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(Contains(status.error_message(), "port must be")) << status.error_message();
}

// --- lookups

TEST(DnsResolver, EveryAddressIsItsOwnEndpointIpv6First) {
  FakeDnsServer dns;
  dns.SetA("multi.test", {"10.0.0.1", "10.0.0.2"});
  dns.SetAaaa("multi.test", {"2001:db8::1"});
  auto started = StartDns(Via(dns, "multi.test:8080"), Quick());
  ASSERT_TRUE(WaitFor([&] { return started->listener->updates() == 1; }));
  EXPECT_EQ(started->listener->endpoints(),
            (std::vector<std::string>{"[2001:db8::1]:8080", "10.0.0.1:8080", "10.0.0.2:8080"}));
  EXPECT_EQ(started->listener->last_update().service_config, "");
  EXPECT_EQ(started->listener->errors(), 0u);

  auto default_port = StartDns(Via(dns, "multi.test"), Quick());
  ASSERT_TRUE(WaitFor([&] { return default_port->listener->updates() == 1; }));
  EXPECT_EQ(default_port->listener->endpoints()[1], "10.0.0.1:443");
}

TEST(DnsResolver, AnIpLiteralResolvesToItselfWithoutALookup) {
  FakeDnsServer dns;
  auto v4 = StartDns(Via(dns, "127.0.0.1:1234"), Quick());
  auto v6 = StartDns(Via(dns, "[::1]:1234"), Quick());
  ASSERT_TRUE(
      WaitFor([&] { return v4->listener->updates() == 1 && v6->listener->updates() == 1; }));
  EXPECT_EQ(v4->listener->endpoints(), std::vector<std::string>{"127.0.0.1:1234"});
  EXPECT_EQ(v6->listener->endpoints(), std::vector<std::string>{"[::1]:1234"});
  v4->resolver->RequestReresolution();
  EXPECT_EQ(dns.Queries("127.0.0.1", Type::kA), 0);
  EXPECT_EQ(dns.Queries("::1", Type::kAaaa), 0);
}

TEST(DnsResolver, LocalhostNeverReachesTheDnsServer) {
  FakeDnsServer dns;
  auto started = StartDns(Via(dns, "localhost:80"), Quick());
  ASSERT_TRUE(WaitFor([&] { return started->listener->updates() == 1; }));
  EXPECT_TRUE(Contains(started->listener->endpoints().back(), "127.0.0.1:80"));
  EXPECT_EQ(dns.Queries("localhost", Type::kA), 0);
  EXPECT_EQ(dns.Queries("localhost", Type::kAaaa), 0);
}

TEST(DnsResolver, ReresolutionIsRateLimitedAndDeferredNotDropped) {
  FakeDnsServer dns;
  dns.SetA("limited.test", {"10.0.0.1"});
  lbkit::DnsResolverOptions options = Quick();
  options.min_time_between_resolutions = 300ms;
  auto started = StartDns(Via(dns, "limited.test:1"), options);
  ASSERT_TRUE(WaitFor([&] { return started->listener->updates() == 1; }));
  // Three requests within the interval: one lookup, at its end.
  for (int i = 0; i < 3; ++i) started->resolver->RequestReresolution();
  ASSERT_TRUE(WaitFor([&] { return started->listener->updates() == 2; }));
  auto times = dns.QueryTimes("limited.test", Type::kA);
  ASSERT_EQ(times.size(), 2u);
  // The first query left right after the first lookup started, so the gap
  // between arrivals is the interval less that (small) delay.
  EXPECT_GE(times[1] - times[0], 250ms);
  EXPECT_FALSE(WaitFor([&] { return dns.Queries("limited.test", Type::kA) > 2; }, 600ms))
      << "the requests collapsed into one lookup, and no refresh is on by default";
}

TEST(DnsResolver, PeriodicRefreshFollowsChangesUnasked) {
  FakeDnsServer dns;
  dns.SetA("moving.test", {"10.0.0.1"});
  lbkit::DnsResolverOptions options = Quick();
  options.refresh_interval = 200ms;
  auto started = StartDns(Via(dns, "moving.test:1"), options);
  ASSERT_TRUE(WaitFor([&] { return started->listener->updates() >= 1; }));
  EXPECT_EQ(started->listener->endpoints(), std::vector<std::string>{"10.0.0.1:1"});
  dns.SetA("moving.test", {"10.0.0.9"});
  ASSERT_TRUE(WaitFor(
      [&] { return started->listener->endpoints() == std::vector<std::string>{"10.0.0.9:1"}; }));
  auto times = dns.QueryTimes("moving.test", Type::kA);
  ASSERT_GE(times.size(), 2u);
  EXPECT_GE(times[1] - times[0], 150ms) << "refreshes are refresh_interval apart";
}

TEST(DnsResolver, NxdomainIsAnErrorNamingNameServerAndReason) {
  FakeDnsServer dns;
  auto started = StartDns(Via(dns, "missing.test:1"), Quick());
  ASSERT_TRUE(WaitFor([&] { return started->listener->errors() >= 1; }));
  std::string error = started->listener->last_error();
  EXPECT_TRUE(Contains(error, "\"missing.test\"")) << error;
  EXPECT_TRUE(Contains(error, "DNS server " + dns.authority())) << error;
  EXPECT_TRUE(Contains(error, "no such name (NXDOMAIN)")) << error;
  EXPECT_EQ(started->listener->updates(), 0u);
}

TEST(DnsResolver, AnEmptyAnswerIsAnError) {
  FakeDnsServer dns;
  dns.SetTxt("empty.test", {{"not an address"}});  // the name exists, with no A or AAAA
  auto started = StartDns(Via(dns, "empty.test:1"), Quick());
  ASSERT_TRUE(WaitFor([&] { return started->listener->errors() >= 1; }));
  EXPECT_TRUE(Contains(started->listener->last_error(), "no A or AAAA record"))
      << started->listener->last_error();
}

TEST(DnsResolver, ATimeoutIsAnErrorNamingIt) {
  FakeDnsServer dns;
  dns.SetA("slow.test", {"10.0.0.1"});
  dns.SetSilent(true);
  lbkit::DnsResolverOptions options = Quick();
  options.query_timeout = 300ms;
  auto begin = std::chrono::steady_clock::now();
  auto started = StartDns(Via(dns, "slow.test:1"), options);
  ASSERT_TRUE(WaitFor([&] { return started->listener->errors() >= 1; }));
  EXPECT_GE(std::chrono::steady_clock::now() - begin, 250ms);
  std::string error = started->listener->last_error();
  EXPECT_TRUE(Contains(error, "timeout")) << error;
  EXPECT_TRUE(Contains(error, "\"slow.test\"")) << error;
  EXPECT_TRUE(Contains(error, dns.authority())) << error;
  EXPECT_GE(dns.Queries("slow.test", Type::kA), 1) << "it did ask";
}

TEST(DnsResolver, AFailureAfterSuccessKeepsTheEndpointsAndRetries) {
  FakeDnsServer dns;
  dns.SetA("flaky.test", {"10.0.0.1"});
  auto started = StartDns(Via(dns, "flaky.test:1"), Quick());
  ASSERT_TRUE(WaitFor([&] { return started->listener->updates() == 1; }));
  dns.Remove("flaky.test");
  started->resolver->RequestReresolution();
  ASSERT_TRUE(WaitFor([&] { return dns.Queries("flaky.test", Type::kA) == 2; }));
  EXPECT_FALSE(WaitFor(
      [&] { return started->listener->errors() > 0 || started->listener->updates() > 1; }, 300ms))
      << "the channel keeps its endpoints: it is told nothing";
  // The failure is retried (after 1 s of backoff) without being asked.
  dns.SetA("flaky.test", {"10.0.0.2"});
  ASSERT_TRUE(WaitFor([&] { return started->listener->updates() == 2; }));
  EXPECT_EQ(started->listener->endpoints(), std::vector<std::string>{"10.0.0.2:1"});
  EXPECT_EQ(started->listener->errors(), 0u);
}

// --- service config (gRFC A2)

constexpr char kRoundRobin[] = R"({"loadBalancingConfig":[{"round_robin":{}}]})";

TEST(DnsServiceConfig, ReadFromTxtWhenEnabled) {
  FakeDnsServer dns;
  dns.SetA("svc.test", {"10.0.0.1"});
  std::string value = std::string(R"(grpc_config=[{"serviceConfig":)") + kRoundRobin + "}]";
  dns.SetTxt("_grpc_config.svc.test",
             {{"v=spf1 -all"}, {value.substr(0, 30), value.substr(30)}});  // split, joined
  lbkit::DnsResolverOptions options = Quick();
  options.enable_service_config = true;
  auto started = StartDns(Via(dns, "svc.test:1"), options);
  ASSERT_TRUE(WaitFor([&] { return started->listener->updates() == 1; }));
  EXPECT_EQ(started->listener->last_update().service_config, kRoundRobin);

  auto disabled = StartDns(Via(dns, "svc.test:1"), Quick());
  ASSERT_TRUE(WaitFor([&] { return disabled->listener->updates() == 1; }));
  EXPECT_EQ(disabled->listener->last_update().service_config, "");
  EXPECT_EQ(dns.Queries("_grpc_config.svc.test", Type::kTxt), 1) << "only the enabled one asked";
}

TEST(DnsServiceConfig, ChoicesFollowGrfcA2) {
  using lbkit::internal::ChooseServiceConfig;
  lbkit::internal::ServiceConfigClient client;
  client.hostname = "host-a";
  client.percentile = 30;
  auto choose = [&client](const std::string& txt) {
    std::string chosen = "unset";
    grpc::Status status = ChooseServiceConfig(txt, client, &chosen);
    return status.ok() ? chosen : "error: " + status.error_message();
  };
  EXPECT_EQ(choose(R"([{"serviceConfig":{"a":1}}])"), R"({"a":1})");
  EXPECT_EQ(choose(R"([{"clientLanguage":["go","java"],"serviceConfig":{"a":1}},
                      {"clientLanguage":["C++"],"serviceConfig":{"b":2}}])"),
            R"({"b":2})")
      << "the first matching choice; languages are case-insensitive";
  EXPECT_EQ(choose(R"([{"clientLanguage":[],"clientHostname":[],"serviceConfig":{"a":1}}])"),
            R"({"a":1})")
      << "empty lists match every client";
  EXPECT_EQ(choose(R"([{"percentage":29,"serviceConfig":{"a":1}},
                      {"percentage":30,"serviceConfig":{"b":2}}])"),
            R"({"b":2})");
  EXPECT_EQ(choose(R"([{"percentage":0,"serviceConfig":{"a":1}}])"), "") << "no choice matches";
  EXPECT_EQ(choose(R"([{"clientHostname":["host-b"],"serviceConfig":{"a":1}},
                      {"clientHostname":["host-a"],"serviceConfig":{"b":2}}])"),
            R"({"b":2})");
  EXPECT_EQ(choose("[]"), "");
  // Anything malformed makes the whole config invalid, even after a match.
  for (const auto& [txt, why] : std::vector<std::pair<std::string, std::string>>{
           {"not json", "not valid JSON"},
           {R"({"serviceConfig":{}})", "must be a JSON list"},
           {R"([{"serviceConfig":{}}, 7])", "choice 1 is not a JSON object"},
           {R"([{"serviceConfig":{}}, {"colour":1,"serviceConfig":{}}])",
            "unknown field \"colour\""},
           {R"([{"percentage":101,"serviceConfig":{}}])", "whole number from 0 to 100"},
           {R"([{"percentage":50.5,"serviceConfig":{}}])", "whole number from 0 to 100"},
           {R"([{"clientLanguage":"c++","serviceConfig":{}}])", "clientLanguage must be a list"},
           {R"([{"clientHostname":[1],"serviceConfig":{}}])", "clientHostname must be a list"},
           {R"([{"percentage":100}])", "choice 0 has no serviceConfig"},
           {R"([{"serviceConfig":"{}"}])", "serviceConfig must be a JSON object"},
       }) {
    std::string result = choose(txt);
    EXPECT_TRUE(Contains(result, "error: ") && Contains(result, why)) << txt << " -> " << result;
  }
}

// --- through a channel

TEST_F(DnsChannel, RoundRobinSpreadsCallsOverEveryAddress) {
  // Two servers on one port of two loopback addresses: only the resolver's
  // two A records can lead calls to both.
  lbkit_test::TestBackend first;
  EchoServer second("127.0.0.2", first.port());
  ASSERT_NE(second.server, nullptr);
  FakeDnsServer dns;
  dns.SetA("backends.test", {"127.0.0.1", "127.0.0.2"});
  auto channel = Channel(Via(dns, "backends.test:") + std::to_string(first.port()), kRoundRobin);
  ASSERT_TRUE(lbkit_test::WaitForReadySubchannels(*channel, 2));
  auto stub = Echo::NewStub(channel);
  std::set<std::string> replies;
  for (int i = 0; i < 10; ++i) replies.insert(Echo(*stub, "m"));
  EXPECT_EQ(replies, (std::set<std::string>{"m (from " + first.address() + ")",
                                            "m (from " + second.service.label() + ")"}));
  EXPECT_EQ(channel->Snapshot().subchannels.size(), 2u);
}

TEST_F(DnsChannel, AnAddressChangeReachesThePolicyOnReresolution) {
  lbkit::DnsResolverOptions options = Quick();
  UseOptions(options);
  auto first = std::make_unique<lbkit_test::TestBackend>();
  EchoServer second("127.0.0.2", first->port());
  ASSERT_NE(second.server, nullptr);
  FakeDnsServer dns;
  dns.SetA("moving.test", {"127.0.0.1"});
  auto channel = Channel(Via(dns, "moving.test:") + std::to_string(first->port()));
  auto stub = Echo::NewStub(channel);
  EXPECT_EQ(Echo(*stub, "m", 10s, /*wait_for_ready=*/true), "m (from " + first->address() + ")");
  // The name moves; the old address goes away, so the policy asks for
  // re-resolution, which finds the new one.
  dns.SetA("moving.test", {"127.0.0.2"});
  first.reset();
  EXPECT_TRUE(WaitFor([&] {
    return Echo(*stub, "m", 1s, /*wait_for_ready=*/true) ==
           "m (from " + second.service.label() + ")";
  }));
  EXPECT_GE(dns.Queries("moving.test", Type::kA), 2);
}

TEST_F(DnsChannel, NxdomainFailsCallsWithTheReason) {
  FakeDnsServer dns;
  auto channel = Channel(Via(dns, "missing.test:1"));
  ASSERT_TRUE(lbkit_test::WaitForChannelState(*channel, GRPC_CHANNEL_TRANSIENT_FAILURE));
  auto stub = Echo::NewStub(channel);
  std::string reply = Echo(*stub, "m");
  EXPECT_EQ(reply.rfind("error: 14: ", 0), 0u) << reply;  // UNAVAILABLE
  EXPECT_TRUE(Contains(reply, "\"missing.test\"")) << reply;
  EXPECT_TRUE(Contains(reply, "NXDOMAIN")) << reply;
  EXPECT_TRUE(Contains(reply, dns.authority())) << reply;
}

TEST_F(DnsChannel, SystemResolverServesIpLiteralsAndLocalhost) {
  lbkit_test::TestBackend backend;
  for (const std::string& target : {"dns:///127.0.0.1:" + std::to_string(backend.port()),
                                    "dns:///localhost:" + std::to_string(backend.port())}) {
    auto channel = Channel(target);
    auto stub = Echo::NewStub(channel);
    EXPECT_EQ(Echo(*stub, "m", 10s, /*wait_for_ready=*/true), "m (from " + backend.address() + ")")
        << target;
  }
}

TEST_F(DnsChannel, TxtServiceConfigPicksThePolicy) {
  lbkit::DnsResolverOptions options = Quick();
  options.enable_service_config = true;
  UseOptions(options);
  lbkit_test::TestBackend backend;
  FakeDnsServer dns;
  dns.SetA("svc.test", {"127.0.0.1"});
  dns.SetTxt("_grpc_config.svc.test",
             {{std::string(R"(grpc_config=[{"serviceConfig":)") + kRoundRobin + "}]"}});
  auto channel = Channel(Via(dns, "svc.test:") + std::to_string(backend.port()));
  auto stub = Echo::NewStub(channel);
  EXPECT_EQ(Echo(*stub, "m", 10s, /*wait_for_ready=*/true), "m (from " + backend.address() + ")");
  EXPECT_EQ(channel->Snapshot().policy, "round_robin");
}

TEST_F(DnsChannel, ABadTxtServiceConfigIsRejectedByTheChannel) {
  lbkit::DnsResolverOptions options = Quick();
  options.enable_service_config = true;
  UseOptions(options);
  FakeDnsServer dns;
  dns.SetA("bad.test", {"127.0.0.1"});
  dns.SetTxt("_grpc_config.bad.test", {{R"(grpc_config=[{"colour":"red","serviceConfig":{}}])"}});
  auto channel = Channel(Via(dns, "bad.test:1"));
  ASSERT_TRUE(lbkit_test::WaitForChannelState(*channel, GRPC_CHANNEL_TRANSIENT_FAILURE));
  lbkit::ChannelSnapshot snapshot = channel->Snapshot();
  EXPECT_TRUE(Contains(snapshot.rejected_config_error, "_grpc_config.bad.test breaks gRFC A2"))
      << snapshot.rejected_config_error;
  EXPECT_TRUE(Contains(snapshot.rejected_config_error, "unknown field")) << snapshot.last_error;
  auto stub = Echo::NewStub(channel);
  std::string reply = Echo(*stub, "m");
  EXPECT_EQ(reply.rfind("error: 14: ", 0), 0u) << reply;
  EXPECT_TRUE(Contains(reply, "gRFC A2")) << reply;
}

// DNS data is outside input: bytes that are not UTF-8, and a long non-ASCII
// config cut short in an error message, must give an error, not an abort
// (a JSON encoder throws on invalid UTF-8, and an exception thrown inside a
// c-ares callback would end the process).
TEST_F(DnsChannel, TxtConfigsThatAreNotUtf8OrCutInsideACharacterAreErrors) {
  lbkit::DnsResolverOptions options = Quick();
  options.enable_service_config = true;
  UseOptions(options);
  std::string euros;
  for (int i = 0; i < 100; ++i) euros += "\xe2\x82\xac";  // U+20AC, 3 bytes each
  for (const std::string& txt : {std::string("grpc_config=\xff"),
                                 R"(grpc_config=[{"note":")" + euros + R"(","serviceConfig":{})"}) {
    FakeDnsServer dns;
    dns.SetA("odd.test", {"127.0.0.1"});
    std::vector<std::string> strings;  // a TXT string holds at most 255 bytes
    for (size_t at = 0; at < txt.size(); at += 255) strings.push_back(txt.substr(at, 255));
    dns.SetTxt("_grpc_config.odd.test", {strings});
    auto channel = Channel(Via(dns, "odd.test:1"));
    ASSERT_TRUE(lbkit_test::WaitForChannelState(*channel, GRPC_CHANNEL_TRANSIENT_FAILURE));
    EXPECT_TRUE(
        Contains(channel->Snapshot().rejected_config_error, "_grpc_config.odd.test breaks gRFC A2"))
        << channel->Snapshot().rejected_config_error;
  }
}

// --- shutdown

// What a channel's listener does when the channel's last reference goes
// while it reports: the resolver is shut down (and destroyed) on the
// lbkit-dns thread, inside the listener call.
class ShuttingDownListener final : public lbkit::ResolverListener {
 public:
  void OnUpdate(lbkit::ResolverState) override { Report(); }
  void OnError(grpc::Status) override { Report(); }
  std::shared_ptr<lbkit::Resolver> resolver;
  std::atomic<int> calls{0};

 private:
  void Report() {
    ++calls;
    std::shared_ptr<lbkit::Resolver> last = std::move(resolver);
    if (last != nullptr) last->Shutdown();
  }
};

TEST(DnsResolver, ShutdownInsideAListenerCallStopsIt) {
  FakeDnsServer dns;
  dns.SetA("self.test", {"10.0.0.1"});
  lbkit::DnsResolverOptions options = Quick();
  options.refresh_interval = 50ms;
  lbkit::Target target;
  ASSERT_TRUE(lbkit::ParseTarget(Via(dns, "self.test:1"), &target).ok());
  auto listener = std::make_shared<ShuttingDownListener>();
  ASSERT_TRUE(lbkit::MakeDnsResolverFactory(options)->Create(target, &listener->resolver).ok());
  listener->resolver->Start(listener);
  ASSERT_TRUE(WaitFor([&] { return listener->calls == 1; }));
  EXPECT_TRUE(WaitFor([] { return !DnsThreadRunning(); })) << "no deadlock, nothing left";
  EXPECT_EQ(listener->calls, 1) << "no refresh after Shutdown";
  EXPECT_EQ(dns.Queries("self.test", Type::kA), 1);
}

TEST(DnsResolver, ShutdownEndsLookupsInFlightAndTheThread) {
  FakeDnsServer dns;
  dns.SetA("slow.test", {"10.0.0.1"});
  dns.SetSilent(true);
  std::vector<std::unique_ptr<Started>> resolvers;
  for (int i = 0; i < 8; ++i) {
    resolvers.push_back(StartDns(Via(dns, "slow.test:1"), Quick()));
  }
  ASSERT_TRUE(WaitFor([&] { return dns.Queries("slow.test", Type::kA) >= 8; }));
  EXPECT_TRUE(DnsThreadRunning());
  std::vector<std::shared_ptr<RecordingListener>> listeners;
  for (auto& started : resolvers) listeners.push_back(started->listener);
  resolvers.clear();  // shuts every one down, lookups in flight
  dns.SetSilent(false);
  EXPECT_TRUE(WaitFor([] { return !DnsThreadRunning(); })) << "the thread exits when idle";
  for (const auto& listener : listeners) {
    EXPECT_EQ(listener->updates() + listener->errors(), 0u);
    EXPECT_EQ(listener.use_count(), 1) << "the resolver let go of its listener";
  }
  // A new resolver starts the thread again.
  dns.SetA("fast.test", {"10.0.0.1"});
  auto again = StartDns(Via(dns, "fast.test:1"), Quick());
  EXPECT_TRUE(WaitFor([&] { return again->listener->updates() == 1; }));
}

}  // namespace
