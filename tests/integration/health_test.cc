// Client-side health checking (gRFC A17) through healthCheckConfig.
#include <grpcpp/client_context.h>
#include <gtest/gtest.h>

#include <set>

#include "common/test_backend.h"
#include "lbkit/lbkit.h"

namespace {

using grpc::examples::echo::Echo;
using lbkit_test::Echo;
using lbkit_test::TestBackend;

std::string HealthConfig(const std::string& policy, const std::string& service) {
  return R"({"loadBalancingConfig":[{")" + policy +
         R"(":{}}],"healthCheckConfig":{"serviceName":")" + service + R"("}})";
}

// The snapshot entry of `address` (state and health), or empty.
std::pair<lbkit::ConnectivityState, std::string> SubchannelOf(lbkit::Channel& channel,
                                                              const std::string& address) {
  for (const auto& sc : channel.Snapshot().subchannels) {
    if (sc.address == address) return {sc.state, sc.health};
  }
  return {lbkit::ConnectivityState::kShutdown, ""};
}

TEST(HealthCheck, NotServingMovesEveryFollowingCallToTheOtherBackendAndBack) {
  TestBackend a, b;
  auto channel = lbkit_test::StaticChannel({a.address(), b.address()},
                                           HealthConfig("round_robin", "grpc.examples.echo.Echo"));
  auto stub = Echo::NewStub(channel);
  ASSERT_TRUE(lbkit_test::WaitForReadySubchannels(*channel, 2));
  EXPECT_EQ(SubchannelOf(*channel, b.address()).second, "SERVING");

  b.SetServing(false);
  ASSERT_TRUE(lbkit_test::WaitFor(
      [&] { return SubchannelOf(*channel, b.address()).second == "NOT_SERVING"; }));
  EXPECT_NE(SubchannelOf(*channel, b.address()).first, lbkit::ConnectivityState::kReady);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(Echo(*stub, "m"), "m (from " + a.address() + ")");
  EXPECT_EQ(channel->GetState(false), GRPC_CHANNEL_READY);

  b.SetServing(true);
  ASSERT_TRUE(lbkit_test::WaitForReadySubchannels(*channel, 2));
  std::set<std::string> served;
  for (int i = 0; i < 4; ++i) served.insert(Echo(*stub, "m"));
  EXPECT_EQ(served, (std::set<std::string>{"m (from " + a.address() + ")",
                                           "m (from " + b.address() + ")"}));
}

TEST(HealthCheck, ABackendWithoutTheHealthServiceIsHealthyAndLoggedOnce) {
  lbkit_test::TraceRecorder trace;
  TestBackend backend(/*health=*/false);
  for (int round = 0; round < 2; ++round) {
    auto channel = lbkit_test::StaticChannel({backend.address()}, HealthConfig("pick_first", ""));
    auto stub = Echo::NewStub(channel);
    EXPECT_EQ(Echo(*stub, "m"), "m (from " + backend.address() + ")");
    EXPECT_EQ(SubchannelOf(*channel, backend.address()).second,
              "UNIMPLEMENTED (treated as SERVING)");
  }
  EXPECT_EQ(trace.Count({"lbkit: health check: " + backend.address(),
                         "does not implement grpc.health.v1.Health"}),
            1);
}

TEST(HealthCheck, AnUnknownServiceIsNotReady) {
  TestBackend backend;
  auto channel =
      lbkit_test::StaticChannel({backend.address()}, HealthConfig("pick_first", "no.such.Service"));
  auto stub = Echo::NewStub(channel);
  ASSERT_TRUE(lbkit_test::WaitForChannelState(*channel, GRPC_CHANNEL_TRANSIENT_FAILURE));
  EXPECT_EQ(SubchannelOf(*channel, backend.address()).second, "SERVICE_UNKNOWN");
  std::string reply = Echo(*stub, "m");
  EXPECT_NE(reply.find("reports SERVICE_UNKNOWN for service \"no.such.Service\""),
            std::string::npos)
      << reply;
}

TEST(HealthCheck, AStartedNotServingBackendGetsNoCalls) {
  TestBackend a, b;
  b.SetServing(false);
  auto channel =
      lbkit_test::StaticChannel({a.address(), b.address()}, HealthConfig("round_robin", ""));
  auto stub = Echo::NewStub(channel);
  ASSERT_TRUE(lbkit_test::WaitFor(
      [&] { return SubchannelOf(*channel, b.address()).second == "NOT_SERVING"; }));
  for (int i = 0; i < 6; ++i) EXPECT_EQ(Echo(*stub, "m"), "m (from " + a.address() + ")");
}

TEST(HealthCheck, AMalformedHealthCheckConfigIsAConfigError) {
  grpc::Status status;
  lbkit::ServiceConfig config;
  status = lbkit::ParseServiceConfig(R"({"healthCheckConfig":{"serviceName":3}})", &config);
  EXPECT_NE(status.error_message().find("healthCheckConfig.serviceName must be a string"),
            std::string::npos);
}

}  // namespace

namespace {

TEST(HealthCheck, PickFirstFailsFastWhileItsOnlyBackendIsUnhealthy) {
  TestBackend backend;
  auto channel = lbkit_test::StaticChannel({backend.address()}, HealthConfig("pick_first", ""));
  auto stub = Echo::NewStub(channel);
  EXPECT_EQ(Echo(*stub, "m"), "m (from " + backend.address() + ")");
  backend.SetServing(false);
  // Fail-fast calls fail with the health error instead of waiting.
  EXPECT_TRUE(lbkit_test::WaitFor([&] {
    return Echo(*stub, "m", std::chrono::seconds(5)).find("reports NOT_SERVING") !=
           std::string::npos;
  }));
  backend.SetServing(true);
  EXPECT_TRUE(lbkit_test::WaitFor(
      [&] { return Echo(*stub, "m") == "m (from " + backend.address() + ")"; }));
}

}  // namespace
