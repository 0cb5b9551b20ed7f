// Backends coming and going, queued calls and their deadlines.
#include <grpcpp/client_context.h>
#include <gtest/gtest.h>

#include <thread>

#include "common/test_backend.h"
#include "lbkit/lbkit.h"

namespace {

using grpc::examples::echo::Echo;
using lbkit_test::Echo;
using lbkit_test::TestBackend;

constexpr char kRoundRobin[] = R"({"loadBalancingConfig":[{"round_robin":{}}]})";

std::string From(const TestBackend& backend, const std::string& message = "m") {
  return message + " (from " + backend.address() + ")";
}

TEST(Resilience, ABackendDownAtStartIsUsedOnceItComesUp) {
  TestBackend up;
  auto down = TestBackend::Reserved();
  auto channel = lbkit_test::StaticChannel({down->address(), up.address()}, kRoundRobin);
  auto stub = Echo::NewStub(channel);
  // Only `up` serves meanwhile.
  for (int i = 0; i < 4; ++i) EXPECT_EQ(Echo(*stub, "m"), From(up));
  down->Start();
  EXPECT_TRUE(lbkit_test::WaitFor([&] { return Echo(*stub, "m") == From(*down); }))
      << "the late backend joins the rotation";
  ASSERT_TRUE(lbkit_test::WaitForReadySubchannels(*channel, 2));
  std::string first = Echo(*stub, "m");
  EXPECT_NE(Echo(*stub, "m"), first) << "and calls alternate again";
}

TEST(Resilience, RoundRobinKeepsServingFromTheOtherBackendWhenOneStops) {
  TestBackend a, b;
  auto channel = lbkit_test::StaticChannel({a.address(), b.address()}, kRoundRobin);
  auto stub = Echo::NewStub(channel);
  ASSERT_TRUE(lbkit_test::WaitForReadySubchannels(*channel, 2));
  b.Stop();
  // Once the channel has seen the drop, every call goes to `a`.
  ASSERT_TRUE(lbkit_test::WaitForReadySubchannels(*channel, 1));
  ASSERT_TRUE(lbkit_test::WaitFor([&] {
    for (const auto& sc : channel->Snapshot().subchannels) {
      if (sc.address == b.address() && sc.state == lbkit::ConnectivityState::kReady) return false;
    }
    return true;
  }));
  for (int i = 0; i < 20; ++i) EXPECT_EQ(Echo(*stub, "m"), From(a));
  EXPECT_EQ(channel->GetState(false), GRPC_CHANNEL_READY);
  // And the stopped backend is picked up again when it returns.
  b.Start();
  EXPECT_TRUE(lbkit_test::WaitFor([&] { return Echo(*stub, "m") == From(b); }));
}

TEST(Resilience, PickFirstReconnectsAfterItsBackendRestarts) {
  TestBackend backend;
  auto channel = lbkit_test::StaticChannel({backend.address()}, "");
  auto stub = Echo::NewStub(channel);
  EXPECT_EQ(Echo(*stub, "m"), From(backend));
  backend.Stop();
  // pick_first goes IDLE (or fails) once the connection drops...
  ASSERT_TRUE(lbkit_test::WaitFor([&] { return channel->GetState(false) != GRPC_CHANNEL_READY; }));
  backend.Start();
  // ...and the next call reconnects.
  EXPECT_TRUE(lbkit_test::WaitFor([&] { return Echo(*stub, "m") == From(backend); }));
}

TEST(Resilience, AQueuedCallHitsItsDeadline) {
  // A resolver that never reports: every call queues.
  auto resolver = lbkit::ManualResolver::Create();
  auto channel = lbkit_test::ManualChannel(resolver);
  auto stub = Echo::NewStub(channel);
  auto start = std::chrono::steady_clock::now();
  std::string reply = Echo(*stub, "m", std::chrono::milliseconds(300));
  auto elapsed = std::chrono::steady_clock::now() - start;
  // gRPC's own deadline ends the queued call, with gRPC's own message.
  EXPECT_EQ(reply.rfind("error: 4: ", 0), 0u) << reply;
  EXPECT_GE(elapsed, std::chrono::milliseconds(250));
  EXPECT_LT(elapsed, std::chrono::seconds(5));
}

TEST(Resilience, AQueuedCallProceedsWhenTheResolverDelivers) {
  TestBackend backend;
  auto resolver = lbkit::ManualResolver::Create();
  auto channel = lbkit_test::ManualChannel(resolver);
  auto stub = Echo::NewStub(channel);
  std::string reply;
  std::thread caller([&] { reply = Echo(*stub, "m", std::chrono::seconds(10)); });
  ASSERT_TRUE(lbkit_test::WaitFor([&] { return channel->Snapshot().queued_calls == 1; }));
  resolver->UpdateState({{lbkit::Endpoint{{backend.address()}}}, ""});
  caller.join();
  EXPECT_EQ(reply, From(backend));
}

TEST(Resilience, ShutdownFailsQueuedCallsWithUnavailable) {
  auto resolver = lbkit::ManualResolver::Create();
  auto channel = lbkit_test::ManualChannel(resolver);
  auto stub = Echo::NewStub(channel);
  std::vector<std::string> replies(3);
  std::vector<std::thread> callers;
  for (auto& reply : replies) {
    callers.emplace_back([&reply, &stub] { reply = Echo(*stub, "m", std::chrono::seconds(30)); });
  }
  ASSERT_TRUE(lbkit_test::WaitFor([&] { return channel->Snapshot().queued_calls == 3; }));
  channel->Shutdown();
  for (auto& caller : callers) caller.join();
  for (const std::string& reply : replies) {
    EXPECT_EQ(reply, "error: 14: lbkit channel shut down");
  }
  EXPECT_EQ(channel->GetState(false), GRPC_CHANNEL_SHUTDOWN);
  EXPECT_EQ(Echo(*stub, "later"), "error: 14: lbkit channel shut down");
}

TEST(Resilience, DestroyingTheChannelWithCallsInFlightIsSafe) {
  TestBackend backend;
  std::vector<std::thread> callers;
  std::atomic<int> finished{0};
  {
    auto channel = lbkit_test::StaticChannel({backend.address()}, kRoundRobin);
    std::shared_ptr<Echo::Stub> stub = Echo::NewStub(channel);
    for (int t = 0; t < 4; ++t) {
      callers.emplace_back([stub, &finished] {
        for (int i = 0; i < 50; ++i) Echo(*stub, "m");
        ++finished;
      });
    }
    // The test's own reference goes here; the callers' stubs keep it alive.
  }
  for (auto& caller : callers) caller.join();
  EXPECT_EQ(finished.load(), 4);
}

}  // namespace
