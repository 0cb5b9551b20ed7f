// ring_hash through a real channel: calls keyed by a header stick to one
// backend, and only that backend is connected.
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <grpcpp/client_context.h>
#include <gtest/gtest.h>

#include "common/test_backend.h"
#include "lbkit/lbkit.h"

namespace {

using grpc::examples::echo::Echo;
using lbkit_test::TestBackend;

// One UnaryEcho call carrying `x-user: user`; the reply or "error: ...".
std::string EchoAs(Echo::Stub& stub, const std::string& user) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  context.AddMetadata("x-user", user);
  grpc::examples::echo::EchoRequest request;
  request.set_message("m");
  grpc::examples::echo::EchoResponse response;
  grpc::Status status = stub.UnaryEcho(&context, request, &response);
  if (!status.ok()) return "error: " + status.error_message();
  return response.message();
}

TEST(RingHash, CallsWithTheSameHeaderValueReachOneBackendAndOnlyItConnects) {
  std::vector<std::unique_ptr<TestBackend>> backends;
  std::vector<lbkit::Endpoint> endpoints;
  for (int i = 0; i < 3; ++i) {
    backends.push_back(std::make_unique<TestBackend>());
    endpoints.push_back(lbkit::Endpoint{{backends.back()->address()}});
  }
  auto resolver = lbkit::ManualResolver::Create();
  resolver->SetInitialState(
      {endpoints, R"({"loadBalancingConfig":[{"ring_hash":{"requestHashHeader":"x-user"}}]})"});
  auto channel = lbkit_test::ManualChannel(resolver);
  auto stub = Echo::NewStub(channel);

  std::set<std::string> replies;
  for (int i = 0; i < 10; ++i) replies.insert(EchoAs(*stub, "alice"));
  ASSERT_EQ(replies.size(), 1u) << *replies.begin();
  const std::string reply = *replies.begin();
  ASSERT_EQ(reply.rfind("m (from ", 0), 0u) << reply;

  lbkit::ChannelSnapshot snapshot = channel->Snapshot();
  EXPECT_EQ(snapshot.policy, "ring_hash");
  ASSERT_EQ(snapshot.subchannels.size(), 1u) << "only the picked backend has a subchannel";
  EXPECT_EQ(reply, "m (from " + snapshot.subchannels[0].address + ")");
  EXPECT_EQ(snapshot.subchannels[0].state, lbkit::ConnectivityState::kReady);
  EXPECT_EQ(snapshot.subchannels[0].calls_started, 10u);
}

}  // namespace
