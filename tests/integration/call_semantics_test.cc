// Fail-fast and wait-for-ready, queue order, shutdown.
#include <grpcpp/client_context.h>
#include <gtest/gtest.h>

#include <mutex>
#include <thread>

#include "common/test_backend.h"
#include "lbkit/lbkit.h"

namespace {

using grpc::examples::echo::Echo;
using lbkit_test::Echo;
using lbkit_test::TestBackend;

TEST(CallSemantics, FailFastFailsAtOnceWhileWaitForReadyWaitsForABackend) {
  auto backend = TestBackend::Reserved();
  auto channel = lbkit_test::StaticChannel({backend->address()}, "");
  auto stub = Echo::NewStub(channel);
  ASSERT_TRUE(lbkit_test::WaitForChannelState(*channel, GRPC_CHANNEL_TRANSIENT_FAILURE));

  std::string fail_fast = Echo(*stub, "m", std::chrono::seconds(20), /*wait_for_ready=*/false);
  EXPECT_EQ(fail_fast.rfind("error: 14: pick_first: failed to connect to all addresses", 0), 0u)
      << fail_fast;

  std::string waited;
  std::thread caller(
      [&] { waited = Echo(*stub, "m", std::chrono::seconds(20), /*wait_for_ready=*/true); });
  ASSERT_TRUE(lbkit_test::WaitFor([&] { return channel->Snapshot().queued_calls == 1; }));
  backend->Start();
  caller.join();
  EXPECT_EQ(waited, "m (from " + backend->address() + ")");
}

// A policy written against the public API: pick_first as a child, with a
// picker that records which calls it placed, in order.
std::mutex g_mu;
std::vector<std::string> g_placed;

class RecordingPicker final : public lbkit::Picker {
 public:
  explicit RecordingPicker(std::shared_ptr<lbkit::Picker> inner) : inner_(std::move(inner)) {}
  lbkit::PickResult Pick(const lbkit::PickArgs& args) const override {
    lbkit::PickResult result = inner_->Pick(args);
    if (result.kind() == lbkit::PickResult::Kind::kComplete) {
      auto seq = args.metadata->find("seq");
      std::lock_guard<std::mutex> lock(g_mu);
      g_placed.push_back(seq == args.metadata->end() ? "?" : seq->second);
    }
    return result;
  }

 private:
  std::shared_ptr<lbkit::Picker> inner_;
};

class RecordingBalancer final : public lbkit::Balancer {
 public:
  explicit RecordingBalancer(lbkit::Helper* helper) : helper_(helper) {
    grpc::Status status;
    child_ = lbkit::ChildBalancer::Create(
        helper, "pick_first",
        [this](const lbkit::BalancerState& state) {
          lbkit::BalancerState wrapped = state;
          wrapped.picker = std::make_shared<RecordingPicker>(state.picker);
          helper_->UpdateState(std::move(wrapped));
        },
        &status);
  }
  grpc::Status UpdateResolverState(lbkit::BalancerUpdate update) override {
    update.config = nullptr;  // pick_first's defaults
    return child_->UpdateResolverState(std::move(update));
  }
  void ResolverError(const grpc::Status& status) override { child_->ResolverError(status); }

 private:
  lbkit::Helper* helper_;
  std::unique_ptr<lbkit::ChildBalancer> child_;
};

class RecordingBuilder final : public lbkit::BalancerBuilder {
 public:
  std::string name() const override { return "recording_pick_first"; }
  grpc::Status ParseConfig(const nlohmann::json&,
                           std::shared_ptr<const lbkit::BalancerConfig>* config) const override {
    *config = std::make_shared<lbkit::BalancerConfig>();
    return grpc::Status::OK;
  }
  std::unique_ptr<lbkit::Balancer> Build(lbkit::Helper* helper) const override {
    return std::make_unique<RecordingBalancer>(helper);
  }
};

TEST(CallSemantics, QueuedCallsArePlacedInArrivalOrder) {
  ASSERT_TRUE(
      lbkit::RegisterBalancer(std::make_shared<RecordingBuilder>(), lbkit::OnDuplicate::kReplace)
          .ok());
  TestBackend backend;
  auto resolver = lbkit::ManualResolver::Create();
  auto channel = lbkit_test::ManualChannel(resolver);  // no state yet: calls queue
  auto stub = Echo::NewStub(channel);
  std::vector<std::thread> callers;
  std::vector<std::string> replies(5);
  for (int i = 0; i < 5; ++i) {
    callers.emplace_back([&, i] {
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
      context.AddMetadata("seq", std::to_string(i));
      grpc::examples::echo::EchoRequest request;
      request.set_message("m");
      grpc::examples::echo::EchoResponse response;
      grpc::Status status = stub->UnaryEcho(&context, request, &response);
      replies[i] = status.ok() ? response.message() : status.error_message();
    });
    // The next call arrives only once this one is queued.
    ASSERT_TRUE(lbkit_test::WaitFor(
        [&] { return channel->Snapshot().queued_calls == static_cast<size_t>(i + 1); }));
  }
  resolver->UpdateState({{lbkit::Endpoint{{backend.address()}}},
                         R"({"loadBalancingConfig":[{"recording_pick_first":{}}]})"});
  for (auto& caller : callers) caller.join();
  for (const std::string& reply : replies) EXPECT_EQ(reply, "m (from " + backend.address() + ")");
  std::lock_guard<std::mutex> lock(g_mu);
  EXPECT_EQ(g_placed, (std::vector<std::string>{"0", "1", "2", "3", "4"}));
}

TEST(CallSemantics, ShutdownReleasesEverySubchannel) {
  lbkit_test::TraceRecorder trace;
  TestBackend a, b;
  auto channel = lbkit_test::StaticChannel({a.address(), b.address()},
                                           R"({"loadBalancingConfig":[{"round_robin":{}}]})");
  ASSERT_TRUE(lbkit_test::WaitForReadySubchannels(*channel, 2));
  channel->Shutdown();
  EXPECT_EQ(trace.Count({"subchannel " + a.address(), "shut down"}), 1);
  EXPECT_EQ(trace.Count({"subchannel " + b.address(), "shut down"}), 1);
  EXPECT_EQ(channel->GetState(false), GRPC_CHANNEL_SHUTDOWN);
  EXPECT_TRUE(channel->Snapshot().subchannels.empty());
}

}  // namespace

namespace {

TEST(CallSemantics, TryCancelEndsAQueuedCall) {
  auto resolver = lbkit::ManualResolver::Create();
  auto channel = lbkit_test::ManualChannel(resolver);  // no state: calls queue
  auto stub = Echo::NewStub(channel);
  grpc::ClientContext context;  // no deadline, wait-for-ready: only a cancel ends it
  context.set_wait_for_ready(true);
  grpc::Status status;
  std::thread caller([&] {
    grpc::examples::echo::EchoRequest request;
    grpc::examples::echo::EchoResponse response;
    status = stub->UnaryEcho(&context, request, &response);
  });
  ASSERT_TRUE(lbkit_test::WaitFor([&] { return channel->Snapshot().queued_calls == 1; }));
  context.TryCancel();
  caller.join();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED) << status.error_message();
  // The queue learns of the cancellation from lbkit's relay, a hop later.
  EXPECT_TRUE(lbkit_test::WaitFor([&] { return channel->Snapshot().queued_calls == 0; }));
}

TEST(CallSemantics, ARelativeDeadlineOnAQueuedCallIsHonoured) {
  auto resolver = lbkit::ManualResolver::Create();
  auto channel = lbkit_test::ManualChannel(resolver);
  auto stub = Echo::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(gpr_time_from_millis(200, GPR_TIMESPAN));  // relative, as gRPC allows
  grpc::examples::echo::EchoRequest request;
  grpc::examples::echo::EchoResponse response;
  grpc::Status status = stub->UnaryEcho(&context, request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << status.error_message();
}

TEST(CallSemantics, APolicySwitchWhileIdleLeavesNoDanglingPicker) {
  // pick_first goes IDLE (its picker wakes the policy on the next pick);
  // the config then switches to round_robin, destroying pick_first. Calls
  // made meanwhile must be served, not touch the old policy.
  TestBackend backend;
  auto resolver = lbkit::ManualResolver::Create();
  std::vector<lbkit::Endpoint> endpoints = {lbkit::Endpoint{{backend.address()}}};
  resolver->SetInitialState({endpoints, ""});
  auto channel = lbkit_test::ManualChannel(resolver);
  auto stub = Echo::NewStub(channel);
  EXPECT_EQ(Echo(*stub, "m"), "m (from " + backend.address() + ")");
  backend.Stop();
  ASSERT_TRUE(lbkit_test::WaitFor([&] { return channel->GetState(false) == GRPC_CHANNEL_IDLE; }));
  backend.Start();
  std::atomic<bool> stop{false};
  std::thread caller([&] {
    while (!stop) Echo(*stub, "m", std::chrono::milliseconds(200));
  });
  resolver->UpdateState({endpoints, R"({"loadBalancingConfig":[{"round_robin":{}}]})"});
  EXPECT_TRUE(lbkit_test::WaitFor(
      [&] { return Echo(*stub, "m") == "m (from " + backend.address() + ")"; }));
  stop = true;
  caller.join();
  EXPECT_EQ(channel->Snapshot().policy, "round_robin");
}

}  // namespace
