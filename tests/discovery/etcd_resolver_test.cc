// The "etcd" resolver (src/discovery/etcd_resolver.cc) against real etcd
// members (EtcdCluster), with real lbkit channels and echo backends. Keys are
// written directly (EncodeEtcdEndpoint, or etcdctl as Go would), never through
// the registrar, so these tests pin down the resolver alone.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>

#include "common/etcd_cluster.h"
#include "common/test_backend.h"
#include "common/thread_count.h"
#include "discovery/etcd_common.h"
#include "echo.grpc.pb.h"
#include "etcd/rpc.grpc.pb.h"
#include "lbkit/channel.h"
#include "lbkit/etcd.h"

namespace lbkit {
namespace internal {
namespace {

using grpc::examples::echo::Echo;
using lbkit_test::EtcdCluster;
using lbkit_test::TestBackend;
using lbkit_test::WaitFor;

constexpr char kRoundRobin[] = R"({"loadBalancingConfig":[{"round_robin":{}}]})";
// random honours endpoint weights: how the tests see a weight arrive.
constexpr char kRandom[] = R"({"loadBalancingConfig":[{"random":{}}]})";
constexpr char kService[] = "svc";

std::shared_ptr<Channel> EtcdChannel(const std::string& target, const std::string& config) {
  ChannelOptions options;
  options.default_service_config = config;
  grpc::Status status;
  auto channel = CreateChannel(target, grpc::InsecureChannelCredentials(), options, &status);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return channel;
}

grpc::Status Register(EtcdCluster& etcd, const TestBackend& backend,
                      const EndpointAttributes& attributes = {}) {
  return etcd.Put(EtcdEndpointKey(kService, backend.address()),
                  EncodeEtcdEndpoint(backend.address(), attributes));
}

grpc::Status Deregister(EtcdCluster& etcd, const TestBackend& backend) {
  return etcd.Delete(EtcdEndpointKey(kService, backend.address()));
}

// Replies per backend address over `calls` calls; failed calls count under
// "error".
std::map<std::string, int> CountReplies(Echo::Stub& stub, int calls) {
  std::map<std::string, int> counts;
  for (int i = 0; i < calls; ++i) {
    std::string reply = lbkit_test::Echo(stub, "hi");
    size_t from = reply.rfind("(from ");
    if (reply.rfind("error", 0) == 0 || from == std::string::npos) {
      ++counts["error"];
    } else {
      ++counts[reply.substr(from + 6, reply.size() - from - 7)];
    }
  }
  return counts;
}

std::set<std::string> Responders(Echo::Stub& stub, int calls) {
  std::set<std::string> responders;
  for (const auto& [address, count] : CountReplies(stub, calls)) responders.insert(address);
  return responders;
}

// Waits until `calls` calls reach exactly `backends`, and fail none.
bool WaitForResponders(Echo::Stub& stub, const std::vector<const TestBackend*>& backends,
                       std::chrono::milliseconds timeout = std::chrono::seconds(15)) {
  std::set<std::string> expected;
  for (const TestBackend* backend : backends) expected.insert(backend->address());
  std::set<std::string> seen;
  bool ok = WaitFor(
      [&] {
        seen = Responders(stub, static_cast<int>(6 * expected.size()));
        return seen == expected;
      },
      timeout);
  if (!ok) {
    std::string text;
    for (const auto& address : seen) text += address + " ";
    ADD_FAILURE() << "calls reached: " << text;
  }
  return ok;
}

// What the etcd resolver traced, for a failure message.
std::string ResolverTrace(const lbkit_test::TraceRecorder& trace) {
  std::string text;
  for (const std::string& line : trace.Lines()) {
    if (line.find("etcd resolver") != std::string::npos) text += line + "\n";
  }
  return text;
}

// Retries `write` while a cluster elects a leader.
bool Eventually(const std::function<grpc::Status()>& write) {
  return WaitFor([&] { return write().ok(); });
}

TEST(EtcdResolver, DiscoversAddedRemovedAndReweighedBackends) {
  EtcdCluster etcd;
  ASSERT_TRUE(etcd.ok()) << etcd.error();
  TestBackend b1, b2, b3;
  ASSERT_TRUE(Register(etcd, b1).ok());
  ASSERT_TRUE(Register(etcd, b2).ok());
  auto channel = EtcdChannel(etcd.Target(kService), kRoundRobin);
  auto stub = Echo::NewStub(channel);
  ASSERT_TRUE(WaitForResponders(*stub, {&b1, &b2}));

  ASSERT_TRUE(Register(etcd, b3).ok());
  ASSERT_TRUE(WaitForResponders(*stub, {&b1, &b2, &b3}));

  ASSERT_TRUE(Deregister(etcd, b1).ok());
  ASSERT_TRUE(WaitForResponders(*stub, {&b2, &b3}));
  EXPECT_EQ(CountReplies(*stub, 30).count(b1.address()), 0u);

  // A weight change is the same key written again: it must reach the policy.
  auto weighted = EtcdChannel(etcd.Target(kService), kRandom);
  auto weighted_stub = Echo::NewStub(weighted);
  ASSERT_TRUE(WaitForResponders(*weighted_stub, {&b2, &b3}));
  EndpointAttributes heavy;
  heavy.weight = 1000;
  ASSERT_TRUE(Register(etcd, b3, heavy).ok());
  // Equal weights give b3 about 100 of 200 calls; 1000:1 gives it 190 or
  // more with probability above 0.99999.
  EXPECT_TRUE(WaitFor([&] { return CountReplies(*weighted_stub, 200)[b3.address()] >= 190; }));

  // No endpoint left is news too: the channel drops them all.
  ASSERT_TRUE(Deregister(etcd, b2).ok());
  ASSERT_TRUE(Deregister(etcd, b3).ok());
  EXPECT_TRUE(WaitFor([&] { return channel->Snapshot().subchannels.empty(); }));
}

TEST(EtcdResolver, KeepsItsEndpointsWhileEtcdIsDownAndFollowsItAfterARestart) {
  EtcdCluster etcd;
  ASSERT_TRUE(etcd.ok()) << etcd.error();
  TestBackend b1, b2, b3;
  ASSERT_TRUE(Register(etcd, b1).ok());
  ASSERT_TRUE(Register(etcd, b2).ok());
  lbkit_test::TraceRecorder trace;
  auto channel = EtcdChannel(etcd.Target(kService), kRoundRobin);
  auto stub = Echo::NewStub(channel);
  ASSERT_TRUE(WaitForResponders(*stub, {&b1, &b2}));

  etcd.Kill(0);
  // The resolver saw its watch end, and failed to watch again at least once.
  ASSERT_TRUE(WaitFor([&] { return trace.Count({"etcd member", "Watch ended"}) >= 2; }));
  auto counts = CountReplies(*stub, 20);
  EXPECT_EQ(counts.count("error"), 0u);
  EXPECT_GT(counts[b1.address()], 0);
  EXPECT_GT(counts[b2.address()], 0);
  EXPECT_EQ(channel->Snapshot().last_error, "");

  ASSERT_TRUE(etcd.Restart(0));
  ASSERT_TRUE(Register(etcd, b3).ok());
  EXPECT_TRUE(WaitForResponders(*stub, {&b1, &b2, &b3}));
}

TEST(EtcdResolver, ListsAgainWhenItsResumedWatchIsCompacted) {
  EtcdCluster etcd(3);
  ASSERT_TRUE(etcd.ok()) << etcd.error();
  TestBackend b1, b2, b3;
  ASSERT_TRUE(Register(etcd, b1).ok());
  ASSERT_TRUE(Register(etcd, b2).ok());
  lbkit_test::TraceRecorder trace;
  // Only member 0: while it is down the resolver cannot move on.
  auto channel = EtcdChannel("etcd://" + etcd.client_endpoint(0) + "/" + kService, kRoundRobin);
  auto stub = Echo::NewStub(channel);
  ASSERT_TRUE(WaitForResponders(*stub, {&b1, &b2}));

  etcd.Kill(0);
  ASSERT_TRUE(Eventually([&] { return Deregister(etcd, b1); }));
  ASSERT_TRUE(Eventually([&] { return Register(etcd, b3); }));
  ASSERT_TRUE(Eventually([&] { return etcd.Compact(); }));
  EXPECT_EQ(trace.Count({"compacted"}), 0);
  ASSERT_TRUE(etcd.Restart(0));

  EXPECT_TRUE(WaitForResponders(*stub, {&b2, &b3}));
  EXPECT_GE(trace.Count({"etcd resolver", "compacted", "listing again"}), 1);
}

TEST(EtcdResolver, LosesNoUpdateWhenTheLeaderIsKilled) {
  EtcdCluster etcd(3);
  ASSERT_TRUE(etcd.ok()) << etcd.error();
  int leader = etcd.Leader();
  ASSERT_GE(leader, 0);
  // The leader first, so that the resolver watches through it and must fail
  // over when it dies.
  std::string members = etcd.client_endpoint(leader);
  for (int i = 0; i < etcd.size(); ++i) {
    if (i != leader) members += "," + etcd.client_endpoint(i);
  }
  lbkit_test::TraceRecorder trace;
  auto channel = EtcdChannel("etcd://" + members + "/" + kService, kRoundRobin);
  // Addresses nothing listens on: the subchannels the channel keeps show the
  // endpoints it has.
  std::vector<std::unique_ptr<TestBackend>> backends;
  for (int i = 0; i < 20; ++i) backends.push_back(TestBackend::Reserved());
  std::set<std::string> expected;
  for (int i = 0; i < 20; ++i) {
    if (i == 6) etcd.Kill(leader);
    ASSERT_TRUE(Eventually([&] { return Register(etcd, *backends[i]); })) << i << "\n"
                                                                          << ResolverTrace(trace);
    expected.insert(backends[i]->address());
    if (i % 3 == 2) {
      ASSERT_TRUE(Eventually([&] { return Deregister(etcd, *backends[i - 1]); })) << i;
      expected.erase(backends[i - 1]->address());
    }
  }
  std::set<std::string> seen;
  EXPECT_TRUE(WaitFor(
      [&] {
        seen.clear();
        for (const auto& subchannel : channel->Snapshot().subchannels) {
          seen.insert(subchannel.address);
        }
        return seen == expected;
      },
      // After an election the resolver may be in a backoff of up to 6 s
      // (max_backoff 5 s, +20%) before it watches again.
      std::chrono::seconds(20)))
      << ResolverTrace(trace);
  EXPECT_EQ(seen.size(), 14u);
  // The watch did fail over: the test did what its name says.
  EXPECT_GE(trace.Count({"etcd member " + etcd.client_endpoint(leader), "Watch ended"}), 1)
      << "leader " << etcd.client_endpoint(leader) << "\n"
      << ResolverTrace(trace);
}

TEST(EtcdResolver, LeavesAMemberThatLostItsLeader) {
  EtcdCluster etcd(3);
  ASSERT_TRUE(etcd.ok()) << etcd.error();
  TestBackend b1, b2;
  ASSERT_TRUE(Register(etcd, b1).ok());
  lbkit_test::TraceRecorder trace;
  auto channel = EtcdChannel("etcd://" + etcd.client_endpoint(0) + "/" + kService, kRoundRobin);
  auto stub = Echo::NewStub(channel);
  ASSERT_TRUE(WaitForResponders(*stub, {&b1}));

  // Member 0 alone has no leader. It still runs, so only the "hasleader"
  // metadata makes it end the watch instead of leaving it silent.
  etcd.Kill(1);
  etcd.Kill(2);
  EXPECT_TRUE(WaitFor([&] { return trace.Count({"etcd member", "no leader"}) >= 1; }));
  EXPECT_GT(CountReplies(*stub, 4)[b1.address()], 0);

  ASSERT_TRUE(etcd.Restart(1));
  ASSERT_TRUE(Eventually([&] { return Register(etcd, b2); }));
  EXPECT_TRUE(WaitForResponders(*stub, {&b1, &b2}));
}

TEST(EtcdResolver, ReadsValuesWrittenByGoClients) {
  EtcdCluster etcd;
  ASSERT_TRUE(etcd.ok()) << etcd.error();
  TestBackend b1, b2;
  // etcd's naming package (Op 0, weight as a string), then etcd 3.5's
  // endpoints package (no Op).
  ASSERT_EQ(
      etcd.Etcdctl({"put", EtcdEndpointKey(kService, b1.address()),
                    R"({"Op":0,"Addr":")" + b1.address() + R"(","Metadata":{"weight":"2"}})"}),
      0);
  ASSERT_EQ(etcd.Etcdctl({"put", EtcdEndpointKey(kService, b2.address()),
                          R"({"Addr":")" + b2.address() + R"(","Metadata":{"zone":"eu"}})"}),
            0);
  auto channel = EtcdChannel(etcd.Target(kService), kRandom);
  auto stub = Echo::NewStub(channel);
  ASSERT_TRUE(WaitForResponders(*stub, {&b1, &b2}));
  // Weight 2 against 1: b1 gets about 800 of 1200 calls (sd 16); equal
  // weights would give it about 600.
  auto counts = CountReplies(*stub, 1200);
  EXPECT_EQ(counts.count("error"), 0u);
  EXPECT_GT(counts[b1.address()], 700);
  EXPECT_LT(counts[b1.address()], 900);

  // The naming package's Delete: a value with "Op":1.
  ASSERT_EQ(etcd.Etcdctl({"put", EtcdEndpointKey(kService, b2.address()),
                          R"({"Op":1,"Addr":")" + b2.address() + R"("})"}),
            0);
  EXPECT_TRUE(WaitForResponders(*stub, {&b1}));
}

TEST(EtcdResolver, SkipsBadValuesOnceLoggedAndKeepsTheOthers) {
  EtcdCluster etcd;
  ASSERT_TRUE(etcd.ok()) << etcd.error();
  TestBackend b1, b2;
  lbkit_test::TraceRecorder trace;
  ASSERT_TRUE(Register(etcd, b1).ok());
  ASSERT_TRUE(etcd.Put("svc/bad1", "not json").ok());
  ASSERT_TRUE(etcd.Put("svc/bad2", R"({"Addr":"127.0.0.1:99999"})").ok());
  auto channel = EtcdChannel(etcd.Target(kService), kRoundRobin);
  auto stub = Echo::NewStub(channel);
  ASSERT_TRUE(WaitForResponders(*stub, {&b1}));
  EXPECT_EQ(trace.Count({"skipping key \"svc/bad1\"", "not JSON"}), 1);
  EXPECT_EQ(trace.Count({"skipping key \"svc/bad2\"", "port"}), 1);

  // Other updates do not log the same bad values again.
  ASSERT_TRUE(Register(etcd, b2).ok());
  ASSERT_TRUE(WaitForResponders(*stub, {&b1, &b2}));
  EXPECT_EQ(trace.Count({"skipping key \"svc/bad1\""}), 1);
  EXPECT_EQ(trace.Count({"skipping key \"svc/bad2\""}), 1);

  // A good key turned bad loses its endpoint.
  ASSERT_TRUE(etcd.Put(EtcdEndpointKey(kService, b1.address()), "{}").ok());
  ASSERT_TRUE(WaitForResponders(*stub, {&b2}));
  std::string key = EtcdEndpointKey(kService, b1.address());
  EXPECT_EQ(trace.Count({"skipping key \"" + key + "\"", "Addr"}), 1);
}

TEST(EtcdResolver, AnAddressNamedByTwoKeysIsOneEndpoint) {
  EtcdCluster etcd;
  ASSERT_TRUE(etcd.ok()) << etcd.error();
  TestBackend b1, b2;
  ASSERT_TRUE(Register(etcd, b1).ok());
  ASSERT_TRUE(etcd.Put("svc/alias", EncodeEtcdEndpoint(b1.address(), {})).ok());
  ASSERT_TRUE(Register(etcd, b2).ok());
  auto channel = EtcdChannel(etcd.Target(kService), kRoundRobin);
  auto stub = Echo::NewStub(channel);
  ASSERT_TRUE(WaitForResponders(*stub, {&b1, &b2}));
  std::multiset<std::string> addresses;
  for (const auto& subchannel : channel->Snapshot().subchannels) {
    addresses.insert(subchannel.address);
  }
  EXPECT_EQ(addresses, (std::multiset<std::string>{b1.address(), b2.address()}));
  // Either key alone keeps the address.
  ASSERT_TRUE(etcd.Delete("svc/alias").ok());
  ASSERT_TRUE(Deregister(etcd, b2).ok());
  EXPECT_TRUE(WaitForResponders(*stub, {&b1}));
}

TEST(EtcdResolver, RejectsBadTargetsAtChannelCreation) {
  for (const auto& [target, problem] : std::vector<std::pair<std::string, std::string>>{
           {"etcd:///svc", "no etcd member"},
           {"etcd://127.0.0.1:2379/", "no service name"},
           {"etcd://127.0.0.1/svc", "no port"},
           {"etcd://127.0.0.1:2379,,127.0.0.1:2380/svc", "empty etcd member"}}) {
    grpc::Status status;
    auto channel =
        CreateChannel(target, grpc::InsecureChannelCredentials(), ChannelOptions(), &status);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << target;
    EXPECT_NE(status.error_message().find(problem), std::string::npos)
        << target << ": " << status.error_message();
  }
}

TEST(EtcdResolver, FailsCallsNamingTheUnreachableMember) {
  auto nothing = TestBackend::Reserved();  // a port nothing listens on
  auto channel = EtcdChannel("etcd://" + nothing->address() + "/" + kService, kRoundRobin);
  auto stub = Echo::NewStub(channel);
  auto start = std::chrono::steady_clock::now();
  std::string reply;
  // The first call may come before the first failed Range: it then waits for
  // it, never longer than its deadline.
  ASSERT_TRUE(WaitFor([&] {
    reply = lbkit_test::Echo(*stub, "hi", std::chrono::seconds(5));
    return reply.find("etcd member " + nothing->address()) != std::string::npos;
  }));
  EXPECT_EQ(reply.rfind("error: 14: ", 0), 0u) << reply;
  EXPECT_NE(reply.find("service \"svc\""), std::string::npos) << reply;
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
}

// An etcd member whose Range never answers until the client gives up.
class SilentKv final : public etcdserverpb::KV::Service {
 public:
  grpc::Status Range(grpc::ServerContext* context, const etcdserverpb::RangeRequest*,
                     etcdserverpb::RangeResponse*) override {
    ++started;
    // Polling: the sync server API has no cancellation callback.
    while (!context->IsCancelled()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    ++cancelled;
    return grpc::Status::CANCELLED;
  }
  std::atomic<int> started{0};
  std::atomic<int> cancelled{0};
};

// A one-member "etcd" on loopback that serves `kv` only.
class FakeEtcd {
 public:
  explicit FakeEtcd(grpc::Service* kv) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(kv);
    server_ = builder.BuildAndStart();
    EXPECT_NE(port_, 0);
  }
  ~FakeEtcd() { server_->Shutdown(); }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  std::string Target() const { return "etcd://" + address() + "/" + kService; }

 private:
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

TEST(EtcdResolver, ShutsDownPromptlyWhileARangeHangs) {
  SilentKv kv;
  FakeEtcd etcd(&kv);
  auto channel = EtcdChannel(etcd.Target(), kRoundRobin);
  ASSERT_TRUE(WaitFor([&] { return kv.started == 1; }));
  auto start = std::chrono::steady_clock::now();
  channel.reset();  // shuts the resolver down: its Range is cancelled, not waited for
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  EXPECT_TRUE(WaitFor([&] { return kv.cancelled == 1; }));
}

TEST(EtcdResolver, IsBuiltInAndCanBeReplacedWithOtherOptions) {
  auto builtin = FindResolverFactory("etcd");
  ASSERT_NE(builtin, nullptr);
  EXPECT_EQ(builtin->scheme(), "etcd");
  EtcdResolverOptions options;
  options.request_timeout = std::chrono::milliseconds(200);
  ASSERT_TRUE(
      RegisterResolverFactory(MakeEtcdResolverFactory(options), OnDuplicate::kReplace).ok());
  SilentKv kv;
  FakeEtcd etcd(&kv);
  auto channel = EtcdChannel(etcd.Target(), kRoundRobin);
  auto stub = Echo::NewStub(channel);
  // The Range gives up after 200 ms (the default would wait 5 s).
  std::string reply = lbkit_test::Echo(*stub, "hi", std::chrono::seconds(3));
  EXPECT_EQ(reply.rfind("error: 14: ", 0), 0u) << reply;
  EXPECT_NE(reply.find("etcd member " + etcd.address() + ": Range failed: gRPC status 4"),
            std::string::npos)
      << reply;
  channel.reset();
  // Other tests of this process get the built-in back.
  ASSERT_TRUE(RegisterResolverFactory(builtin, OnDuplicate::kReplace).ok());
}

// Records what a resolver reports; may run `on_update` inside OnUpdate.
class RecordingListener final : public ResolverListener {
 public:
  void OnUpdate(ResolverState state) override {
    std::function<void()> hook;
    {
      std::lock_guard<std::mutex> lock(mu_);
      addresses_.clear();
      for (const Endpoint& endpoint : state.endpoints) {
        addresses_.insert(endpoint.addresses.begin(), endpoint.addresses.end());
      }
      ++updates_;
      hook = on_update_;
    }
    if (hook) hook();
  }
  void OnError(grpc::Status) override {}
  std::set<std::string> addresses() const {
    std::lock_guard<std::mutex> lock(mu_);
    return addresses_;
  }
  int updates() const {
    std::lock_guard<std::mutex> lock(mu_);
    return updates_;
  }
  void set_on_update(std::function<void()> hook) {
    std::lock_guard<std::mutex> lock(mu_);
    on_update_ = std::move(hook);
  }

 private:
  mutable std::mutex mu_;
  std::set<std::string> addresses_;
  int updates_ = 0;
  std::function<void()> on_update_;
};

// A started etcd resolver for `uri`, from the built-in factory.
std::shared_ptr<Resolver> StartResolver(const std::string& uri,
                                        std::shared_ptr<ResolverListener> listener) {
  Target target;
  EXPECT_TRUE(ParseTarget(uri, &target).ok());
  std::shared_ptr<Resolver> resolver;
  grpc::Status status = FindResolverFactory("etcd")->Create(target, &resolver);
  EXPECT_TRUE(status.ok()) << status.error_message();
  if (resolver != nullptr) resolver->Start(std::move(listener));
  return resolver;
}

TEST(EtcdResolver, AddsNoThreadPerResolver) {
  EtcdCluster etcd;
  ASSERT_TRUE(etcd.ok()) << etcd.error();
  // b3 too, now: its server's threads must not be counted.
  TestBackend b1, b2, b3;
  ASSERT_TRUE(Register(etcd, b1).ok());
  ASSERT_TRUE(Register(etcd, b2).ok());
  const std::set<std::string> expected{b1.address(), b2.address()};
  // One first, so that the process-wide threads (lbkit's IoLoop, gRPC's
  // own) exist before counting. gRPC's timer pool is left out of the count
  // (thread_count.h): it grows with timers firing at once, not with them.
  auto first_listener = std::make_shared<RecordingListener>();
  auto first = StartResolver(etcd.Target(kService), first_listener);
  ASSERT_TRUE(WaitFor([&] { return first_listener->addresses() == expected; }));
  const int before = lbkit_test::ThreadCount(lbkit_test::kGrpcTimerThreads);
  const std::string names_before = lbkit_test::ThreadNames();
  ASSERT_GT(before, 0);

  constexpr int kResolvers = 20;
  std::vector<std::shared_ptr<RecordingListener>> listeners;
  std::vector<std::shared_ptr<Resolver>> resolvers;
  for (int i = 0; i < kResolvers; ++i) {
    listeners.push_back(std::make_shared<RecordingListener>());
    resolvers.push_back(StartResolver(etcd.Target(kService), listeners.back()));
  }
  // Each of them lists and watches.
  for (int i = 0; i < kResolvers; ++i) {
    EXPECT_TRUE(WaitFor([&] { return listeners[i]->addresses() == expected; })) << i;
  }
  EXPECT_EQ(lbkit_test::ThreadCount(lbkit_test::kGrpcTimerThreads), before)
      << "before: " << names_before << "\nnow: " << lbkit_test::ThreadNames();
  ASSERT_TRUE(Register(etcd, b3).ok());
  for (int i = 0; i < kResolvers; ++i) {
    EXPECT_TRUE(WaitFor([&] { return listeners[i]->addresses().count(b3.address()) == 1; })) << i;
  }
  EXPECT_EQ(lbkit_test::ThreadCount(lbkit_test::kGrpcTimerThreads), before)
      << "before: " << names_before << "\nnow: " << lbkit_test::ThreadNames();
  for (auto& resolver : resolvers) resolver->Shutdown();
  first->Shutdown();
}

TEST(EtcdResolver, ShutdownFromInsideItsListenerReturns) {
  EtcdCluster etcd;
  ASSERT_TRUE(etcd.ok()) << etcd.error();
  TestBackend b1;
  ASSERT_TRUE(Register(etcd, b1).ok());
  auto listener = std::make_shared<RecordingListener>();
  std::atomic<bool> returned{false};
  std::shared_ptr<Resolver> resolver;
  std::mutex mu;
  // On lbkit's IoLoop thread, inside the resolver's own listener call: it
  // cannot wait for that call, and must not deadlock.
  listener->set_on_update([&] {
    std::lock_guard<std::mutex> lock(mu);
    resolver->Shutdown();
    returned = true;
  });
  {
    std::lock_guard<std::mutex> lock(mu);
    resolver = StartResolver(etcd.Target(kService), listener);
  }
  ASSERT_TRUE(WaitFor([&] { return returned.load(); }));
  // Nothing is reported after Shutdown.
  ASSERT_TRUE(Deregister(etcd, b1).ok());
  TestBackend b2;
  ASSERT_TRUE(Register(etcd, b2).ok());
  EXPECT_FALSE(WaitFor([&] { return listener->updates() > 1; }, std::chrono::milliseconds(500)));
  std::lock_guard<std::mutex> lock(mu);
  resolver.reset();
}

TEST(EtcdResolver, ShutdownWaitsForAListenerCallUnderWay) {
  EtcdCluster etcd;
  ASSERT_TRUE(etcd.ok()) << etcd.error();
  TestBackend b1;
  ASSERT_TRUE(Register(etcd, b1).ok());
  auto listener = std::make_shared<RecordingListener>();
  std::promise<void> entered, release;
  std::shared_future<void> released = release.get_future().share();
  // A listener call that lasts until the test lets it return (a real one
  // returns at once; resolver.h).
  listener->set_on_update([&entered, released] {
    entered.set_value();
    released.wait();
  });
  auto resolver = StartResolver(etcd.Target(kService), listener);
  entered.get_future().wait();
  auto shutdown = std::async(std::launch::async, [&resolver] { resolver->Shutdown(); });
  // Shutdown must not return while the listener is being called.
  EXPECT_EQ(shutdown.wait_for(std::chrono::milliseconds(300)), std::future_status::timeout);
  listener->set_on_update(nullptr);
  release.set_value();
  EXPECT_EQ(shutdown.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  EXPECT_EQ(listener->updates(), 1);
}

TEST(EtcdResolver, WaitForReadyCallsSucceedAcrossAnEtcdRestart) {
  EtcdCluster etcd;
  ASSERT_TRUE(etcd.ok()) << etcd.error();
  TestBackend b1;
  ASSERT_TRUE(Register(etcd, b1).ok());
  auto before = EtcdChannel(etcd.Target(kService), kRoundRobin);
  auto before_stub = Echo::NewStub(before);
  ASSERT_TRUE(WaitForResponders(*before_stub, {&b1}));

  etcd.Kill(0);
  // A channel made while etcd is down has no endpoints until it is back.
  auto during = EtcdChannel(etcd.Target(kService), kRoundRobin);
  auto during_stub = Echo::NewStub(during);
  std::vector<std::future<std::string>> calls;
  for (int i = 0; i < 4; ++i) {
    for (Echo::Stub* stub : {before_stub.get(), during_stub.get()}) {
      calls.push_back(std::async(std::launch::async, [stub] {
        return lbkit_test::Echo(*stub, "hi", std::chrono::seconds(30), /*wait_for_ready=*/true);
      }));
    }
  }
  ASSERT_TRUE(WaitFor([&] {
    return during->Snapshot().last_error.find("etcd member") != std::string::npos;
  })) << during->Snapshot().last_error;
  ASSERT_TRUE(etcd.Restart(0));
  for (auto& call : calls) {
    std::string reply = call.get();
    EXPECT_NE(reply.find("(from " + b1.address() + ")"), std::string::npos) << reply;
  }
}

}  // namespace
}  // namespace internal
}  // namespace lbkit
