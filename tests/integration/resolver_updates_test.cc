// How resolver events reach the policy: in order, with an update that a
// newer update replaced before the control thread got to it dropped (each
// update is the whole state; a fast resolver must not leave a backlog).
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <grpcpp/security/credentials.h>
#include <gtest/gtest.h>

#include "common/test_backend.h"
#include "lbkit/lbkit.h"

namespace {

// What the recording policy saw, and a gate that holds its first update.
struct Record {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::string> events;
  bool holding = false;
  bool released = false;
};

Record* record = nullptr;  // the running test's

class RecordingBalancer final : public lbkit::Balancer {
 public:
  grpc::Status UpdateResolverState(lbkit::BalancerUpdate update) override {
    std::unique_lock<std::mutex> lock(record->mu);
    record->events.push_back("update:" + std::to_string(update.endpoints.size()));
    if (record->events.size() == 1) {
      // Hold the control thread, as a slow policy would, while the test
      // reports more.
      record->holding = true;
      record->cv.notify_all();
      record->cv.wait(lock, [] { return record->released; });
    }
    return grpc::Status::OK;
  }
  void ResolverError(const grpc::Status& status) override {
    std::lock_guard<std::mutex> lock(record->mu);
    record->events.push_back("error:" + status.error_message());
  }
};

class RecordingBuilder final : public lbkit::BalancerBuilder {
 public:
  std::string name() const override { return "test_recording"; }
  grpc::Status ParseConfig(const nlohmann::json&,
                           std::shared_ptr<const lbkit::BalancerConfig>* config) const override {
    *config = std::make_shared<lbkit::BalancerConfig>();
    return grpc::Status::OK;
  }
  std::unique_ptr<lbkit::Balancer> Build(lbkit::Helper*) const override {
    return std::make_unique<RecordingBalancer>();
  }
};

lbkit::ResolverState WithEndpoints(int n) {
  lbkit::ResolverState state;
  for (int i = 1; i <= n; ++i) state.endpoints.push_back({{"127.0.0.1:" + std::to_string(i)}});
  return state;
}

TEST(ResolverUpdates, QueuedUpdatesCollapseToTheNewestAndErrorsKeepTheirPlace) {
  Record this_test;
  record = &this_test;
  ASSERT_TRUE(
      lbkit::RegisterBalancer(std::make_shared<RecordingBuilder>(), lbkit::OnDuplicate::kReplace)
          .ok());
  auto resolver = lbkit::ManualResolver::Create();
  lbkit::ChannelOptions options;
  options.resolver = resolver;
  options.default_service_config = R"({"loadBalancingConfig":[{"test_recording":{}}]})";
  grpc::Status status;
  auto channel =
      lbkit::CreateChannel("manual:///", grpc::InsecureChannelCredentials(), options, &status);
  ASSERT_TRUE(status.ok()) << status.error_message();

  resolver->UpdateState(WithEndpoints(1));
  {
    std::unique_lock<std::mutex> lock(this_test.mu);
    ASSERT_TRUE(
        this_test.cv.wait_for(lock, std::chrono::seconds(10), [&] { return this_test.holding; }));
  }
  // While the policy holds the control thread: two updates (the first is
  // replaced), an error, two more updates (again only the last counts).
  resolver->UpdateState(WithEndpoints(2));
  resolver->UpdateState(WithEndpoints(3));
  resolver->ReportError(grpc::Status(grpc::StatusCode::UNAVAILABLE, "lookup failed"));
  resolver->UpdateState(WithEndpoints(4));
  resolver->UpdateState(WithEndpoints(5));
  {
    std::lock_guard<std::mutex> lock(this_test.mu);
    this_test.released = true;
    this_test.cv.notify_all();
  }
  const std::vector<std::string> expected = {"update:1", "update:3", "error:lookup failed",
                                             "update:5"};
  EXPECT_TRUE(lbkit_test::WaitFor([&] {
    std::lock_guard<std::mutex> lock(this_test.mu);
    return this_test.events.size() >= expected.size();
  }));
  channel->Snapshot();  // runs on the control thread: everything queued before has run
  {
    std::lock_guard<std::mutex> lock(this_test.mu);
    EXPECT_EQ(this_test.events, expected);
  }
  channel->Shutdown();
  record = nullptr;
}

}  // namespace
