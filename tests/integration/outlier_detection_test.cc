// Through a real channel to real backends: a policy that hands its child
// ForwardingSubchannels still sends each call to the backend it picked; and
// outlier_detection ejects a backend that fails half its calls, moves the
// traffic away, and brings it back when a config with no algorithm arrives
// (the timing of un-ejection is the unit tests', on the fake clock).
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/test_backend.h"
#include "echo.grpc.pb.h"
#include "echo_service.h"
#include "lbkit/lbkit.h"

namespace {

using grpc::examples::echo::Echo;
using grpc::examples::echo::EchoRequest;
using grpc::examples::echo::EchoResponse;
using lbkit_test::TestBackend;

// The backend address named at the end of a reply, or the reply itself.
std::string Backend(const std::string& reply) {
  size_t from = reply.rfind("(from ");
  if (from == std::string::npos) return reply;
  return reply.substr(from + 6, reply.size() - from - 7);
}

// --- A policy whose child gets wrapped subchannels -------------------------

// Twice wrapped, to show that any depth reaches the connection.
class CountingSubchannel final : public lbkit::ForwardingSubchannel {
 public:
  using ForwardingSubchannel::ForwardingSubchannel;
};

std::mutex picked_mu;
std::string last_picked;            // the address of the last completed call's pick
std::atomic<int> wrapped_picks{0};  // picks that returned our wrapper

class WrappingPicker final : public lbkit::Picker {
 public:
  explicit WrappingPicker(std::shared_ptr<lbkit::Picker> child) : child_(std::move(child)) {}
  lbkit::PickResult Pick(const lbkit::PickArgs& args) const override {
    lbkit::PickResult result = child_->Pick(args);
    if (result.kind() != lbkit::PickResult::Kind::kComplete) return result;
    if (dynamic_cast<CountingSubchannel*>(result.subchannel()) != nullptr) ++wrapped_picks;
    result.on_done() = [address = result.subchannel()->address()](const lbkit::CallDoneInfo&) {
      std::lock_guard<std::mutex> lock(picked_mu);
      last_picked = address;
    };
    return result;
  }

 private:
  std::shared_ptr<lbkit::Picker> child_;
};

class WrappingPolicy final : public lbkit::Balancer, private lbkit::Helper {
 public:
  explicit WrappingPolicy(lbkit::Helper* parent) : parent_(parent) {
    grpc::Status status;
    child_ = lbkit::ChildBalancer::Create(
        this, "round_robin",
        [this](const lbkit::BalancerState& state) {
          parent_->UpdateState(
              {state.state, std::make_shared<WrappingPicker>(state.picker), state.status});
        },
        &status);
  }
  grpc::Status UpdateResolverState(lbkit::BalancerUpdate update) override {
    std::shared_ptr<const lbkit::BalancerConfig> config;
    grpc::Status status =
        lbkit::FindBalancer("round_robin")->ParseConfig(nlohmann::json::object(), &config);
    if (!status.ok()) return status;
    return child_->UpdateResolverState({std::move(update.endpoints), config});
  }
  void ResolverError(const grpc::Status& status) override { child_->ResolverError(status); }

 private:
  // The child's helper: its subchannels come back wrapped twice.
  std::shared_ptr<lbkit::Subchannel> CreateSubchannel(
      const std::string& address, lbkit::SubchannelStateListener listener) override {
    auto inner = std::make_shared<lbkit::ForwardingSubchannel>(
        parent_->CreateSubchannel(address, std::move(listener)));
    return std::make_shared<CountingSubchannel>(std::move(inner));
  }
  void UpdateState(lbkit::BalancerState) override {}
  void RequestReresolution() override { parent_->RequestReresolution(); }
  std::unique_ptr<lbkit::Timer> StartTimer(std::chrono::milliseconds delay,
                                           std::function<void()> fn) override {
    return parent_->StartTimer(delay, std::move(fn));
  }
  void Post(std::function<void()> fn) override { parent_->Post(std::move(fn)); }
  const std::string& target() const override { return parent_->target(); }
  // Timers go to the parent: so does the clock they are measured against.
  std::chrono::steady_clock::time_point Now() const override { return parent_->Now(); }

  lbkit::Helper* parent_;
  std::unique_ptr<lbkit::ChildBalancer> child_;  // last: destroyed first
};

class WrappingBuilder final : public lbkit::BalancerBuilder {
 public:
  std::string name() const override { return "wrapping_test_policy"; }
  grpc::Status ParseConfig(const nlohmann::json&,
                           std::shared_ptr<const lbkit::BalancerConfig>* config) const override {
    *config = std::make_shared<lbkit::BalancerConfig>();
    return grpc::Status::OK;
  }
  std::unique_ptr<lbkit::Balancer> Build(lbkit::Helper* helper) const override {
    return std::make_unique<WrappingPolicy>(helper);
  }
};

TEST(ForwardingSubchannel, CallsPickedOnAWrapperReachTheWrappedBackend) {
  ASSERT_TRUE(
      lbkit::RegisterBalancer(std::make_shared<WrappingBuilder>(), lbkit::OnDuplicate::kReplace)
          .ok());
  TestBackend a, b;
  auto channel = lbkit_test::StaticChannel(
      {a.address(), b.address()}, R"({"loadBalancingConfig":[{"wrapping_test_policy":{}}]})");
  ASSERT_TRUE(lbkit_test::WaitForReadySubchannels(*channel, 2));
  auto stub = Echo::NewStub(channel);
  std::map<std::string, int> served;
  wrapped_picks = 0;
  for (int i = 0; i < 40; ++i) {
    std::string backend = Backend(lbkit_test::Echo(*stub, "m"));
    ++served[backend];
    std::lock_guard<std::mutex> lock(picked_mu);
    EXPECT_EQ(backend, last_picked) << "call " << i << " reached another backend than picked";
  }
  EXPECT_EQ(wrapped_picks.load(), 40);
  EXPECT_EQ(served[a.address()], 20) << "round_robin alternates";
  EXPECT_EQ(served[b.address()], 20);
}

// --- outlier_detection end to end ------------------------------------------

// An echo backend that, while `failing`, fails every other call.
class FlakyEcho final : public Echo::Service {
 public:
  grpc::Status UnaryEcho(grpc::ServerContext*, const EchoRequest* request,
                         EchoResponse* response) override {
    if (failing.load() && calls_.fetch_add(1) % 2 == 0) {
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, "flaky backend failed");
    }
    response->set_message(request->message() + " (from " + address + ")");
    return grpc::Status::OK;
  }
  std::atomic<bool> failing{true};
  std::string address;

 private:
  std::atomic<uint64_t> calls_{0};
};

TEST(OutlierDetection, AFlakyBackendIsEjectedThenComesBack) {
  TestBackend a, b;
  FlakyEcho flaky;
  int port = 0;
  std::string error;
  std::unique_ptr<grpc::Server> server =
      lbkit_example::StartEchoServer("127.0.0.1:0", &flaky, &port, &error, /*health=*/false);
  ASSERT_NE(server, nullptr) << error;
  flaky.address = "127.0.0.1:" + std::to_string(port);

  // Sweeps every second; a failure rate above 30% over 5 calls ejects for
  // 300s: a loaded machine needs only ~15 calls a second to get it ejected,
  // and it stays out for the rest of the test unless un-ejected on purpose.
  // `config(false)` is the same with no algorithm.
  auto config = [](bool eject) {
    std::string algorithm = eject ? R"("failurePercentageEjection":{"threshold":30,
        "minimumHosts":3,"requestVolume":5},)"
                                  : "";
    return R"({"loadBalancingConfig":[{"outlier_detection":{"interval":"1s",
        "baseEjectionTime":"300s","maxEjectionPercent":34,)" +
           algorithm + R"("childPolicy":[{"round_robin":{}}]}}]})";
  };
  auto resolver = lbkit::ManualResolver::Create();
  const std::vector<lbkit::Endpoint> endpoints = {lbkit::Endpoint{{a.address()}},
                                                  lbkit::Endpoint{{b.address()}},
                                                  lbkit::Endpoint{{flaky.address}}};
  resolver->SetInitialState({endpoints, config(true)});
  auto channel = lbkit_test::ManualChannel(resolver);
  ASSERT_TRUE(lbkit_test::WaitForReadySubchannels(*channel, 3));
  EXPECT_EQ(channel->Snapshot().policy, "outlier_detection");
  auto stub = Echo::NewStub(channel);

  // 30 calls: how many the flaky backend served, and how many failed.
  int flaky_served = 0, failed = 0;
  auto batch = [&] {
    flaky_served = failed = 0;
    for (int i = 0; i < 30; ++i) {
      std::string reply = lbkit_test::Echo(*stub, "m");
      if (reply.rfind("error: ", 0) == 0) {
        ++failed;
      } else if (Backend(reply) == flaky.address) {
        ++flaky_served;
      }
    }
  };

  batch();
  EXPECT_GT(flaky_served, 0) << "round_robin sends it its share at first";
  EXPECT_GT(failed, 0) << "and half of that share fails";

  // Ejected: no call reaches it, and none fails.
  ASSERT_TRUE(lbkit_test::WaitFor(
      [&] {
        batch();
        return flaky_served == 0 && failed == 0;
      },
      std::chrono::seconds(30)))
      << "still served " << flaky_served << ", failed " << failed;
  batch();
  EXPECT_EQ(flaky_served, 0) << "traffic stays away while it is ejected";
  EXPECT_EQ(failed, 0);

  // Healthy again, and a config with no algorithm un-ejects everything: it
  // gets traffic back.
  flaky.failing = false;
  resolver->UpdateState({endpoints, config(false)});
  ASSERT_TRUE(lbkit_test::WaitFor(
      [&] {
        batch();
        return flaky_served > 0;
      },
      std::chrono::seconds(30)))
      << "never un-ejected";
  EXPECT_EQ(failed, 0);
  server->Shutdown();
}

}  // namespace
