// Through real channels: a policy that throws fails calls with a status
// naming it instead of taking the process down; rejected service configs and
// policy rejections show in Snapshot(); an invalid default service config is
// CreateChannel's error.
#include <grpcpp/client_context.h>
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>

#include "common/test_backend.h"
#include "common/throwing_policy.h"
#include "lbkit/lbkit.h"

namespace {

using grpc::examples::echo::Echo;
using lbkit_test::Echo;
using lbkit_test::ManualChannel;
using lbkit_test::TestBackend;

// A channel to `backend` whose service config selects `policy` throwing in
// `where`.
std::shared_ptr<lbkit::Channel> ThrowingChannel(
    const TestBackend& backend, const std::string& where,
    std::shared_ptr<lbkit::ManualResolver>* out = nullptr,
    const std::string& policy = "throwing_policy") {
  lbkit_test::RegisterThrowingPolicies();
  auto resolver = lbkit::ManualResolver::Create();
  resolver->SetInitialState(
      {{lbkit::Endpoint{{backend.address()}}}, lbkit_test::ThrowingConfigJson(where, policy)});
  if (out != nullptr) *out = resolver;
  return ManualChannel(resolver);
}

// Waits for TRANSIENT_FAILURE and checks that calls fail with UNAVAILABLE and
// `message`, which the channel's snapshot and the log also show.
void ExpectPolicyFailure(const std::shared_ptr<lbkit::Channel>& channel, const std::string& message,
                         const lbkit_test::TraceRecorder& log) {
  ASSERT_TRUE(lbkit_test::WaitForChannelState(*channel, GRPC_CHANNEL_TRANSIENT_FAILURE));
  EXPECT_EQ(channel->Snapshot().last_error, message);
  auto stub = Echo::NewStub(channel);
  EXPECT_EQ(Echo(*stub, "m"), "error: 14: " + message);
  EXPECT_GE(log.Count({message}), 1) << "logged";
}

TEST(PolicyExceptions, AThrowingBuildFailsCallsNamingThePolicy) {
  lbkit_test::TraceRecorder log;
  TestBackend backend;
  auto channel = ThrowingChannel(backend, "none", nullptr, "throwing_build");
  const std::string message = "policy \"throwing_build\" threw: boom in build (in Build)";
  ExpectPolicyFailure(channel, message, log);
  EXPECT_EQ(channel->Snapshot().policy_update_error, message);
}

TEST(PolicyExceptions, AThrowingUpdateResolverStateFailsCallsNamingThePolicy) {
  lbkit_test::TraceRecorder log;
  TestBackend backend;
  auto channel = ThrowingChannel(backend, "update");
  const std::string message =
      "policy \"throwing_policy\" threw: boom in update (in UpdateResolverState)";
  ExpectPolicyFailure(channel, message, log);
  EXPECT_EQ(channel->Snapshot().policy_update_error, message);
}

TEST(PolicyExceptions, AThrowingSubchannelListenerFailsCallsNamingThePolicy) {
  lbkit_test::TraceRecorder log;
  TestBackend backend;
  auto channel = ThrowingChannel(backend, "listener");
  ExpectPolicyFailure(
      channel,
      "policy \"throwing_policy\" threw: boom in listener (in a subchannel state listener)", log);
  EXPECT_TRUE(channel->Snapshot().subchannels.empty()) << "the policy's subchannels released";
}

TEST(PolicyExceptions, AThrowingTimerFailsCallsNamingThePolicy) {
  lbkit_test::TraceRecorder log;
  TestBackend backend;
  auto channel = ThrowingChannel(backend, "timer");
  ExpectPolicyFailure(channel,
                      "policy \"throwing_policy\" threw: boom in timer (in a timer callback)", log);
}

TEST(PolicyExceptions, APostCallbackThrowingANonStdExceptionFailsCallsNamingThePolicy) {
  lbkit_test::TraceRecorder log;
  TestBackend backend;
  auto channel = ThrowingChannel(backend, "post");
  ExpectPolicyFailure(channel,
                      "policy \"throwing_policy\" threw: an exception not derived from "
                      "std::exception (in a Helper::Post callback)",
                      log);
}

TEST(PolicyExceptions, AThrowingExitIdleFailsCallsNamingThePolicy) {
  lbkit_test::TraceRecorder log;
  TestBackend backend;
  auto channel = ThrowingChannel(backend, "exit_idle");
  ASSERT_TRUE(lbkit_test::WaitForChannelState(*channel, GRPC_CHANNEL_IDLE));
  channel->GetState(/*try_to_connect=*/true);
  ExpectPolicyFailure(channel, "policy \"throwing_policy\" threw: boom in exit_idle (in ExitIdle)",
                      log);
}

TEST(PolicyExceptions, TheNextResolverUpdateRebuildsAPolicyThatThrew) {
  TestBackend backend;
  std::shared_ptr<lbkit::ManualResolver> resolver;
  auto channel = ThrowingChannel(backend, "update", &resolver);
  ASSERT_TRUE(lbkit_test::WaitForChannelState(*channel, GRPC_CHANNEL_TRANSIENT_FAILURE));
  resolver->UpdateState(
      {{lbkit::Endpoint{{backend.address()}}}, lbkit_test::ThrowingConfigJson("none")});
  auto stub = Echo::NewStub(channel);
  EXPECT_TRUE(lbkit_test::WaitFor(
      [&] { return Echo(*stub, "m") == "m (from " + backend.address() + ")"; }));
  EXPECT_EQ(channel->Snapshot().policy_update_error, "");
}

TEST(PolicyExceptions, AThrowingPickFailsThatCallWithInternalNamingThePicker) {
  lbkit_test::TraceRecorder log;
  TestBackend backend;
  auto channel = ThrowingChannel(backend, "pick");
  ASSERT_TRUE(lbkit_test::WaitForChannelState(*channel, GRPC_CHANNEL_READY));
  auto stub = Echo::NewStub(channel);
  const std::string message = "lbkit: picker lbkit_test::ThrowingPicker threw: boom in pick";
  EXPECT_EQ(Echo(*stub, "m"), "error: 13: " + message);
  EXPECT_EQ(Echo(*stub, "m"), "error: 13: " + message) << "every call, and the process lives";
  EXPECT_EQ(channel->GetState(false), GRPC_CHANNEL_READY) << "the policy itself is not failed";
  EXPECT_GE(log.Count({message}), 1) << "logged";
}

TEST(PolicyExceptions, APickThrowingANonStdExceptionFailsThatCallWithInternal) {
  TestBackend backend;
  auto channel = ThrowingChannel(backend, "pick_int");
  ASSERT_TRUE(lbkit_test::WaitForChannelState(*channel, GRPC_CHANNEL_READY));
  auto stub = Echo::NewStub(channel);
  EXPECT_EQ(Echo(*stub, "m"),
            "error: 13: lbkit: picker lbkit_test::ThrowingPicker threw: an exception not derived "
            "from std::exception");
}

TEST(PolicyExceptions, AWaitForReadyCallFailsTooWhenThePickThrows) {
  TestBackend backend;
  auto channel = ThrowingChannel(backend, "pick");
  ASSERT_TRUE(lbkit_test::WaitForChannelState(*channel, GRPC_CHANNEL_READY));
  auto stub = Echo::NewStub(channel);
  // Not held until the deadline: a throw is a bug, not "not ready yet".
  EXPECT_EQ(Echo(*stub, "m", std::chrono::seconds(30), /*wait_for_ready=*/true),
            "error: 13: lbkit: picker lbkit_test::ThrowingPicker threw: boom in pick");
}

TEST(PolicyExceptions, ADoneCallbackThatThrowsIsLoggedAndTheCallSucceeds) {
  lbkit_test::TraceRecorder log;
  TestBackend backend;
  auto channel = ThrowingChannel(backend, "done");
  ASSERT_TRUE(lbkit_test::WaitForChannelState(*channel, GRPC_CHANNEL_READY));
  auto stub = Echo::NewStub(channel);
  // Placed at once: the callback runs inside the call, on this thread.
  EXPECT_EQ(Echo(*stub, "m"), "m (from " + backend.address() + ")");
  EXPECT_GE(log.Count({"lbkit: a pick's done-callback threw: boom in done"}), 1);
}

TEST(PolicyExceptions, ADoneCallbackThatThrowsOnLbkitsIoThreadIsContainedToo) {
  lbkit_test::RegisterThrowingPolicies();
  TestBackend backend;
  auto resolver = lbkit::ManualResolver::Create();
  auto channel = ManualChannel(resolver);  // no state yet: the call waits, then is relayed
  auto stub = Echo::NewStub(channel);
  grpc::ClientContext context;
  context.set_wait_for_ready(true);
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::examples::echo::EchoRequest request;
  request.set_message("m");
  grpc::examples::echo::EchoResponse response;
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  grpc::Status status;
  stub->async()->UnaryEcho(&context, &request, &response, [&](grpc::Status s) {
    std::lock_guard<std::mutex> lock(mu);
    status = std::move(s);
    done = true;
    cv.notify_all();
  });
  ASSERT_TRUE(lbkit_test::WaitFor([&] { return channel->Snapshot().queued_calls == 1; }));
  resolver->UpdateState({{lbkit::Endpoint{{backend.address()}}},
                         lbkit_test::ThrowingConfigJson("done", "throwing_policy")});
  std::unique_lock<std::mutex> lock(mu);
  ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(20), [&] { return done; }));
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.message(), "m (from " + backend.address() + ")");
  // The I/O thread lives on: another channel's queued call still gets placed.
  lock.unlock();
  auto second = Echo::NewStub(ThrowingChannel(backend, "none"));
  EXPECT_EQ(Echo(*second, "again", std::chrono::seconds(10), true),
            "again (from " + backend.address() + ")");
}

// ---- rejected service configs and policy rejections, in Snapshot() ----

constexpr char kRoundRobin[] = R"({"loadBalancingConfig":[{"round_robin":{}}]})";
constexpr char kBadJson[] = R"({"loadBalancingConfig":[{"round_robin":{}})";

TEST(RejectedConfig, ABadLaterConfigIsInTheSnapshotAndLoggedOnce) {
  lbkit_test::TraceRecorder log;
  TestBackend a;
  auto resolver = lbkit::ManualResolver::Create();
  std::vector<lbkit::Endpoint> endpoints = {lbkit::Endpoint{{a.address()}}};
  resolver->SetInitialState({endpoints, kRoundRobin});
  auto channel = ManualChannel(resolver);
  ASSERT_TRUE(lbkit_test::WaitForReadySubchannels(*channel, 1));
  EXPECT_EQ(channel->Snapshot().rejected_config_error, "");

  resolver->UpdateState({endpoints, kBadJson});
  resolver->UpdateState({endpoints, kBadJson});  // the same again: not logged again
  // Snapshot() runs on the control thread after both updates.
  lbkit::ChannelSnapshot snapshot = channel->Snapshot();
  const std::string error = "invalid service config: not valid JSON: " + std::string(kBadJson);
  EXPECT_EQ(snapshot.rejected_config_error, error);
  EXPECT_EQ(snapshot.rejected_config, kBadJson);
  EXPECT_EQ(snapshot.policy, "round_robin") << "the last good config stays in force";
  EXPECT_EQ(snapshot.state, lbkit::ConnectivityState::kReady);
  EXPECT_EQ(log.Count({"service config rejected: " + error, "keeping the last good config"}), 1);

  resolver->UpdateState({endpoints, kRoundRobin});
  snapshot = channel->Snapshot();
  EXPECT_EQ(snapshot.rejected_config_error, "") << "cleared once a config is accepted";
  EXPECT_EQ(snapshot.rejected_config, "");
}

TEST(RejectedConfig, ABadFirstConfigIsInTheSnapshotAndTheChannelFails) {
  TestBackend a;
  auto resolver = lbkit::ManualResolver::Create();
  const std::string bad = std::string(R"({"loadBalancingConfig":[{"no_such_policy":{}}],"x":")") +
                          std::string(300, 'y') + "\"}";
  resolver->SetInitialState({{lbkit::Endpoint{{a.address()}}}, bad});
  auto channel = ManualChannel(resolver);
  ASSERT_TRUE(lbkit_test::WaitForChannelState(*channel, GRPC_CHANNEL_TRANSIENT_FAILURE));
  lbkit::ChannelSnapshot snapshot = channel->Snapshot();
  EXPECT_EQ(snapshot.rejected_config_error.rfind(
                "invalid service config: no registered policy in loadBalancingConfig", 0),
            0u)
      << snapshot.rejected_config_error;
  EXPECT_EQ(snapshot.last_error, snapshot.rejected_config_error);
  EXPECT_EQ(snapshot.rejected_config,
            bad.substr(0, 200) + "... (" + std::to_string(bad.size()) + " bytes)")
      << "quoted bounded";
}

TEST(RejectedConfig, APolicyRejectingAnUpdateIsInTheSnapshotUntilItAccepts) {
  TestBackend a;
  lbkit_test::RegisterThrowingPolicies();
  auto resolver = lbkit::ManualResolver::Create();
  resolver->SetInitialState(
      {{lbkit::Endpoint{{a.address()}}}, lbkit_test::ThrowingConfigJson("none")});
  auto channel = ManualChannel(resolver);
  ASSERT_TRUE(lbkit_test::WaitForReadySubchannels(*channel, 1));
  resolver->UpdateState({{}, lbkit_test::ThrowingConfigJson("none")});  // no endpoints: refused
  EXPECT_EQ(channel->Snapshot().policy_update_error, "throwing_policy: no endpoints");
  resolver->UpdateState({{lbkit::Endpoint{{a.address()}}}, lbkit_test::ThrowingConfigJson("none")});
  EXPECT_EQ(channel->Snapshot().policy_update_error, "");
}

// ---- CreateChannel and ChannelOptions::default_service_config ----

TEST(DefaultServiceConfig, AnInvalidOneIsCreateChannelsErrorAndFailsEveryCall) {
  TestBackend a;
  lbkit::ChannelOptions options;
  options.default_service_config = R"({"loadBalancingConfig":[{"round_robin":[]}]})";
  grpc::Status status;
  auto channel = lbkit::CreateChannel("static:///" + a.address(),
                                      grpc::InsecureChannelCredentials(), options, &status);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message(),
            "ChannelOptions::default_service_config: invalid service config: config of policy "
            "\"round_robin\" must be an object, got []");
  ASSERT_NE(channel, nullptr);
  ASSERT_TRUE(lbkit_test::WaitForChannelState(*channel, GRPC_CHANNEL_TRANSIENT_FAILURE));
  auto stub = Echo::NewStub(channel);
  EXPECT_EQ(Echo(*stub, "m"), "error: 14: " + status.error_message());
  EXPECT_TRUE(channel->Snapshot().subchannels.empty()) << "the resolver never started";
}

TEST(DefaultServiceConfig, AnInvalidOneFailsTheChannelEvenWhenTheResolverSuppliesAGoodOne) {
  TestBackend a;
  auto resolver = lbkit::ManualResolver::Create();
  resolver->SetInitialState({{lbkit::Endpoint{{a.address()}}}, kRoundRobin});
  lbkit::ChannelOptions options;
  options.resolver = resolver;
  options.default_service_config = "{";
  grpc::Status status;
  auto channel =
      lbkit::CreateChannel("manual:///", grpc::InsecureChannelCredentials(), options, &status);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message(),
            "ChannelOptions::default_service_config: invalid service config: not valid JSON: {");
  auto stub = Echo::NewStub(channel);
  EXPECT_EQ(Echo(*stub, "m"), "error: 14: " + status.error_message());
}

TEST(DefaultServiceConfig, AValidOneIsOk) {
  TestBackend a;
  lbkit::ChannelOptions options;
  options.default_service_config = kRoundRobin;
  grpc::Status status;
  auto channel = lbkit::CreateChannel("static:///" + a.address(),
                                      grpc::InsecureChannelCredentials(), options, &status);
  EXPECT_TRUE(status.ok()) << status.error_message();
  auto stub = Echo::NewStub(channel);
  EXPECT_EQ(Echo(*stub, "m"), "m (from " + a.address() + ")");
}

}  // namespace
