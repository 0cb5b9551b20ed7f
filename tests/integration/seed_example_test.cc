// The seed example, through lbkit: two echo backends, a manual resolver with
// one endpoint each, custom_round_robin{chooseSecond: N}.
#include <grpcpp/client_context.h>
#include <grpcpp/security/credentials.h>
#include <gtest/gtest.h>

#include <thread>

#include "common/test_backend.h"
#include "custom_round_robin.h"
#include "lbkit/lbkit.h"

namespace {

using lbkit_test::TestBackend;

std::shared_ptr<lbkit::Channel> SeedChannel(const TestBackend& a, const TestBackend& b,
                                            int choose_second) {
  EXPECT_TRUE(customlb::RegisterCustomRoundRobin().ok());
  auto resolver = lbkit::ManualResolver::Create();
  lbkit::ResolverState state;
  state.endpoints = {lbkit::Endpoint{{a.address()}}, lbkit::Endpoint{{b.address()}}};
  state.service_config = R"({"loadBalancingConfig":[{"custom_round_robin":{"chooseSecond":)" +
                         std::to_string(choose_second) + "}}]}";
  resolver->SetInitialState(state);
  return lbkit_test::ManualChannel(resolver);
}

// The backend (0 or 1) that served each of `n` calls, read from the reply.
std::vector<int> Route(grpc::examples::echo::Echo::Stub& stub, const TestBackend& a,
                       const TestBackend& b, int n) {
  std::vector<int> route;
  for (int i = 0; i < n; ++i) {
    std::string reply = lbkit_test::Echo(stub, "this is examples/customloadbalancing");
    if (reply == "this is examples/customloadbalancing (from " + a.address() + ")") {
      route.push_back(0);
    } else if (reply == "this is examples/customloadbalancing (from " + b.address() + ")") {
      route.push_back(1);
    } else {
      ADD_FAILURE() << "unexpected reply: " << reply;
      route.push_back(-1);
    }
  }
  return route;
}

TEST(SeedExample, NineCallsSplitOneToTwoWithEveryThirdOnTheSecondServer) {
  TestBackend a, b;
  auto channel = SeedChannel(a, b, 3);
  auto stub = grpc::examples::echo::Echo::NewStub(channel);
  EXPECT_EQ(Route(*stub, a, b, 9), (std::vector<int>{0, 0, 1, 0, 0, 1, 0, 0, 1}));
  EXPECT_EQ(channel->GetState(false), GRPC_CHANNEL_READY);
}

TEST(SeedExample, ChooseSecondTwoAlternates) {
  TestBackend a, b;
  auto stub = grpc::examples::echo::Echo::NewStub(SeedChannel(a, b, 2));
  EXPECT_EQ(Route(*stub, a, b, 6), (std::vector<int>{0, 1, 0, 1, 0, 1}));
}

TEST(SeedExample, ChooseSecondZeroNeverUsesTheSecond) {
  TestBackend a, b;
  auto stub = grpc::examples::echo::Echo::NewStub(SeedChannel(a, b, 0));
  EXPECT_EQ(Route(*stub, a, b, 5), (std::vector<int>{0, 0, 0, 0, 0}));
}

TEST(SeedExample, TheFirstCallWaitsForBothChildrenToBeReady) {
  // With only the first backend up, custom_round_robin cannot be READY: a
  // wait-for-ready call waits; it completes once the second comes up, and
  // the sequence starts from the beginning.
  TestBackend a;
  auto b = TestBackend::Reserved();
  auto channel = SeedChannel(a, *b, 3);
  auto stub = grpc::examples::echo::Echo::NewStub(channel);
  std::string reply;
  std::thread caller([&] {
    reply = lbkit_test::Echo(*stub, "first", std::chrono::seconds(20), /*wait_for_ready=*/true);
  });
  ASSERT_TRUE(lbkit_test::WaitFor([&] {
    return channel->GetState(false) == GRPC_CHANNEL_TRANSIENT_FAILURE;
  })) << "with one backend down the policy reports TRANSIENT_FAILURE";
  b->Start();
  caller.join();
  EXPECT_EQ(reply, "first (from " + a.address() + ")");
  EXPECT_EQ(Route(*stub, a, *b, 2), (std::vector<int>{0, 1}));
}

}  // namespace
