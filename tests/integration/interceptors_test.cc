// ChannelOptions::interceptor_factories: the application's client
// interceptors see every call lbkit places, whatever its style, and a call
// that waited in lbkit's queue too; metadata they add reaches the server.
#include <grpcpp/client_context.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/client_interceptor.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/call_styles.h"
#include "common/test_backend.h"
#include "echo_service.h"
#include "lbkit/lbkit.h"

namespace {

using lbkit_test::OneCall;
using lbkit_test::Style;
using lbkit_test::WaitFor;

constexpr char kKey[] = "x-lbkit-interceptor-test";

// Counts the calls it is asked to intercept, by method, and tags each call
// with metadata.
class CountingFactory final : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  class Tagger final : public grpc::experimental::Interceptor {
   public:
    void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
      if (methods->QueryInterceptionHookPoint(
              grpc::experimental::InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
        methods->GetSendInitialMetadata()->emplace(kKey, "yes");
      }
      methods->Proceed();
    }
  };

  grpc::experimental::Interceptor* CreateClientInterceptor(
      grpc::experimental::ClientRpcInfo* info) override {
    std::lock_guard<std::mutex> lock(mu_);
    ++by_method_[info->method()];
    return new Tagger();
  }
  std::map<std::string, int> by_method() {
    std::lock_guard<std::mutex> lock(mu_);
    return by_method_;
  }

 private:
  std::mutex mu_;
  std::map<std::string, int> by_method_;
};

// An echo server that counts the calls carrying the interceptor's metadata.
class TaggedBackend {
 public:
  explicit TaggedBackend(int port = 0) : service_("tagged") {
    service_.set_call_hook([this](grpc::ServerContext* context) {
      if (context->client_metadata().count(kKey) > 0) ++tagged;
    });
    std::string error;
    server_ = lbkit_example::StartEchoServer("127.0.0.1:" + std::to_string(port), &service_, &port_,
                                             &error, /*health=*/false);
    EXPECT_NE(server_, nullptr) << error;
  }
  ~TaggedBackend() { server_->Shutdown(std::chrono::system_clock::now()); }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  std::atomic<int> tagged{0};

 private:
  lbkit_example::EchoService service_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

std::shared_ptr<lbkit::Channel> ChannelWith(const std::string& address,
                                            std::shared_ptr<CountingFactory> factory,
                                            const std::string& service_config = "") {
  lbkit::ChannelOptions options;
  options.default_service_config = service_config;
  options.interceptor_factories.push_back(std::move(factory));
  options.interceptor_factories.push_back(nullptr);  // skipped
  grpc::Status status;
  auto channel = lbkit::CreateChannel("static:///" + address, grpc::InsecureChannelCredentials(),
                                      options, &status);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return channel;
}

TEST(Interceptors, SeeEveryCallStyleAndTheirMetadataReachesTheServer) {
  TaggedBackend backend;
  auto factory = std::make_shared<CountingFactory>();
  auto channel = ChannelWith(backend.address(), factory);
  ASSERT_TRUE(lbkit_test::WaitForReadySubchannels(*channel, 1));
  const Style styles[] = {Style::kSyncUnary, Style::kAsyncUnary, Style::kCallbackUnary,
                          Style::kSyncServerStreaming, Style::kSyncBidi};
  for (Style style : styles) {
    OneCall call(style, channel, std::chrono::seconds(10));
    lbkit_test::Outcome outcome = call.Wait();
    EXPECT_TRUE(outcome.status.ok()) << Name(style) << ": " << outcome.status.error_message();
  }
  std::map<std::string, int> seen = factory->by_method();
  EXPECT_EQ(seen["/grpc.examples.echo.Echo/UnaryEcho"], 3);
  EXPECT_EQ(seen["/grpc.examples.echo.Echo/ServerStreamingEcho"], 1);
  EXPECT_EQ(seen["/grpc.examples.echo.Echo/BidirectionalStreamingEcho"], 1);
  EXPECT_EQ(backend.tagged.load(), 5);
}

TEST(Interceptors, SeeACallThatWaitedInTheQueue) {
  std::unique_ptr<lbkit_test::TestBackend> reserved = lbkit_test::TestBackend::Reserved();
  const int port = reserved->port();
  const std::string address = reserved->address();
  reserved.reset();  // only its port is wanted
  auto factory = std::make_shared<CountingFactory>();
  auto channel = ChannelWith(address, factory);
  OneCall call(Style::kAsyncUnary, channel, std::chrono::seconds(20), /*wait_for_ready=*/true);
  ASSERT_TRUE(WaitFor([&] { return channel->Snapshot().queued_calls == 1; }));
  TaggedBackend backend(port);
  lbkit_test::Outcome outcome = call.Wait();
  EXPECT_TRUE(outcome.status.ok()) << outcome.status.error_message();
  EXPECT_EQ(factory->by_method()["/grpc.examples.echo.Echo/UnaryEcho"], 1);
  EXPECT_EQ(backend.tagged.load(), 1);
}

TEST(Interceptors, DoNotSeeLbkitsOwnHealthWatches) {
  // Client-side health checking (gRFC A17) makes a Health/Watch stream per
  // subchannel: lbkit's call, not the application's.
  lbkit_test::TestBackend backend(/*health=*/true);
  auto factory = std::make_shared<CountingFactory>();
  auto channel = ChannelWith(
      backend.address(), factory,
      R"({"loadBalancingConfig":[{"round_robin":{}}],"healthCheckConfig":{"serviceName":""}})");
  ASSERT_TRUE(WaitFor([&] {
    lbkit::ChannelSnapshot snapshot = channel->Snapshot();
    return snapshot.subchannels.size() == 1 && snapshot.subchannels[0].health == "SERVING";
  })) << "the health watch never reported SERVING";
  OneCall call(Style::kSyncUnary, channel, std::chrono::seconds(10));
  EXPECT_TRUE(call.Wait().status.ok());
  std::map<std::string, int> seen = factory->by_method();
  EXPECT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen["/grpc.examples.echo.Echo/UnaryEcho"], 1);
}

}  // namespace
