// The service config's methodConfig on real backends: timeouts shorten
// deadlines, waitForReady applies to lbkit's queueing unless the call set its
// own, message limits and retryPolicy are enforced by the subchannel's gRPC
// channel (a retry stays on the same backend), and what lbkit does not
// honour is reported.
#include <grpcpp/client_context.h>
#include <grpcpp/security/credentials.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <thread>

#include "common/test_backend.h"
#include "echo_service.h"
#include "lbkit/lbkit.h"

namespace {

using grpc::examples::echo::Echo;
using grpc::examples::echo::EchoRequest;
using grpc::examples::echo::EchoResponse;
using lbkit_test::StaticChannel;
using lbkit_test::TestBackend;
using lbkit_test::WaitFor;

// UnaryEcho only. "deadline": replies with the milliseconds left of the
// call's deadline as the server sees it ("none" without one). "block": waits
// until the call is cancelled (its deadline). "fail-once": the server's first
// such call fails with UNAVAILABLE, later ones succeed. Counts every call.
class ProbeService final : public Echo::Service {
 public:
  grpc::Status UnaryEcho(grpc::ServerContext* context, const EchoRequest* request,
                         EchoResponse* response) override {
    ++calls;
    const std::string& what = request->message();
    if (what == "deadline") {
      auto deadline = context->deadline();
      if (deadline == std::chrono::system_clock::time_point::max()) {
        response->set_message("none");
      } else {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::system_clock::now());
        response->set_message(std::to_string(left.count()));
      }
    } else if (what == "block") {
      WaitFor([context] { return context->IsCancelled(); }, std::chrono::seconds(20));
      return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
    } else if (what == "fail-once") {
      if (failed_.exchange(true) == false) {
        return grpc::Status(grpc::StatusCode::UNAVAILABLE, "first attempt fails");
      }
      response->set_message("ok");
    } else {
      response->set_message(what);
    }
    return grpc::Status::OK;
  }
  std::atomic<int> calls{0};

 private:
  std::atomic<bool> failed_{false};
};

class ProbeBackend {
 public:
  ProbeBackend() {
    std::string error;
    server_ = lbkit_example::StartEchoServer("127.0.0.1:0", &service, &port_, &error,
                                             /*health=*/false);
    EXPECT_NE(server_, nullptr) << error;
  }
  ~ProbeBackend() {
    if (server_ != nullptr) server_->Shutdown(std::chrono::system_clock::now());
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  ProbeService service;

 private:
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

std::string Config(const std::string& method_config) {
  return R"({"loadBalancingConfig":[{"round_robin":{}}],"methodConfig":[)" + method_config + "]}";
}

grpc::Status Call(Echo::Stub& stub, const std::string& message, grpc::ClientContext* context,
                  std::string* reply = nullptr) {
  EchoRequest request;
  request.set_message(message);
  EchoResponse response;
  grpc::Status status = stub.UnaryEcho(context, request, &response);
  if (reply != nullptr) *reply = response.message();
  return status;
}

// Milliseconds the server saw left of the deadline of a call whose own
// deadline is `own` from now (0: none); -1 when it saw none.
long DeadlineSeenByServer(Echo::Stub& stub, std::chrono::milliseconds own) {
  grpc::ClientContext context;
  if (own.count() > 0) context.set_deadline(std::chrono::system_clock::now() + own);
  context.set_wait_for_ready(true);
  std::string reply;
  grpc::Status status = Call(stub, "deadline", &context, &reply);
  EXPECT_TRUE(status.ok()) << status.error_message();
  if (reply == "none" || reply.empty()) return -1;
  return std::stol(reply);
}

// A config giving the echo service `timeout`.
std::string EchoTimeout(const std::string& timeout) {
  return Config(R"({"name":[{"service":"grpc.examples.echo.Echo"}],"timeout":")" + timeout +
                R"("})");
}

using std::chrono::milliseconds;

// The server saw a deadline, at most `most` ms away (plus 100 ms: gRPC's
// grpc-timeout header rounds up).
void ExpectDeadlineWithin(Echo::Stub& stub, milliseconds own, long most) {
  long left = DeadlineSeenByServer(stub, own);
  EXPECT_GT(left, 0);
  EXPECT_LE(left, most + 100);
}

TEST(MethodConfigTimeout, SetsTheDeadlineOfACallWithNone) {
  ProbeBackend backend;
  auto stub = Echo::NewStub(StaticChannel({backend.address()}, EchoTimeout("0.5s")));
  ExpectDeadlineWithin(*stub, milliseconds(0), 500);
  // And the call ends there: the server would wait 20 s.
  grpc::ClientContext blocked;
  auto start = std::chrono::steady_clock::now();
  grpc::Status status = Call(*stub, "block", &blocked);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << status.error_message();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
}

TEST(MethodConfigTimeout, ShortensALaterDeadlineAndKeepsAnEarlierOne) {
  ProbeBackend backend;
  auto stub = Echo::NewStub(StaticChannel({backend.address()}, EchoTimeout("3s")));
  ExpectDeadlineWithin(*stub, milliseconds(60000), 3000);
  ExpectDeadlineWithin(*stub, milliseconds(1000), 1000);
}

TEST(MethodConfigTimeout, EndsAQueuedCallToo) {
  // No backend: the call waits in lbkit's queue (waitForReady) until the
  // config's timeout, the relayed call included.
  std::unique_ptr<TestBackend> down = TestBackend::Reserved();
  auto stub = Echo::NewStub(
      StaticChannel({down->address()}, Config(R"({"name":[{"service":"grpc.examples.echo.Echo"}],
                                    "timeout":"0.3s","waitForReady":true})")));
  grpc::ClientContext context;
  auto start = std::chrono::steady_clock::now();
  grpc::Status status = Call(*stub, "hello", &context);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << status.error_message();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
}

TEST(MethodConfigMatching, TheServiceEntryWinsOverTheDefaultOne) {
  ProbeBackend backend;
  auto channel = StaticChannel({backend.address()}, Config(R"({"name":[{}],"timeout":"100s"},
                                         {"name":[{"service":"grpc.examples.echo.Echo"}],
                                          "timeout":"1s"},
                                         {"name":[{"service":"grpc.examples.echo.Echo",
                                                   "method":"ServerStreamingEcho"}],
                                          "timeout":"50s"})"));
  auto stub = Echo::NewStub(channel);
  ExpectDeadlineWithin(*stub, milliseconds(0), 1000);
}

// A UnaryEcho through the callback API, whose context has wait-for-ready
// unset unless `explicit_wait` is given.
class PendingCall {
 public:
  PendingCall(Echo::Stub& stub, int explicit_wait = -1) {
    context_.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    if (explicit_wait >= 0) context_.set_wait_for_ready(explicit_wait == 1);
    request_.set_message("hello");
    stub.async()->UnaryEcho(&context_, &request_, &response_,
                            [this](grpc::Status status) { done_.set_value(status); });
  }
  grpc::Status Wait() {
    std::future<grpc::Status> future = done_.get_future();
    if (future.wait_for(std::chrono::seconds(30)) != std::future_status::ready) {
      ADD_FAILURE() << "the call did not end";
      context_.TryCancel();
    }
    return future.get();
  }
  const EchoResponse& response() const { return response_; }

 private:
  grpc::ClientContext context_;
  EchoRequest request_;
  EchoResponse response_;
  std::promise<grpc::Status> done_;
};

TEST(MethodConfigWaitForReady, QueuesACallUntilTheBackendComesUpUnlessTheCallSaysOtherwise) {
  std::unique_ptr<TestBackend> backend = TestBackend::Reserved();
  auto channel =
      StaticChannel({backend->address()}, Config(R"({"name":[{"service":"grpc.examples.echo.Echo"}],
                                          "waitForReady":true})"));
  auto stub = Echo::NewStub(channel);
  // The backend is down: a fail-fast call would fail now.
  ASSERT_TRUE(WaitFor([&] { return channel->GetState(true) == GRPC_CHANNEL_TRANSIENT_FAILURE; }));
  {
    PendingCall fail_fast(*stub, /*explicit_wait=*/0);  // the call's own setting wins
    EXPECT_EQ(fail_fast.Wait().error_code(), grpc::StatusCode::UNAVAILABLE);
  }
  PendingCall waiting(*stub);
  ASSERT_TRUE(WaitFor([&] { return channel->Snapshot().queued_calls == 1; }));
  backend->Start();
  grpc::Status status = waiting.Wait();
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_NE(waiting.response().message().find("hello"), std::string::npos);
}

TEST(MethodConfigLimits, MaxResponseMessageBytesIsEnforcedByTheSubchannel) {
  TestBackend backend;
  auto channel =
      StaticChannel({backend.address()}, Config(R"({"name":[{"service":"grpc.examples.echo.Echo"}],
                                          "maxResponseMessageBytes":16})"));
  auto stub = Echo::NewStub(channel);
  grpc::ClientContext context;
  context.set_wait_for_ready(true);
  grpc::Status status = Call(*stub, "a message whose echo is longer than sixteen bytes", &context);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();
}

TEST(MethodConfigRetry, RetriesOnTheSameBackend) {
  ProbeBackend a;
  ProbeBackend b;
  auto channel = StaticChannel({a.address(), b.address()},
                               Config(R"({"name":[{"service":"grpc.examples.echo.Echo"}],
                               "retryPolicy":{"maxAttempts":3,"initialBackoff":"0.01s",
                                              "maxBackoff":"0.05s","backoffMultiplier":2,
                                              "retryableStatusCodes":["UNAVAILABLE"]}})"));
  ASSERT_TRUE(lbkit_test::WaitForReadySubchannels(*channel, 2));
  auto stub = Echo::NewStub(channel);
  grpc::ClientContext context;
  std::string reply;
  grpc::Status status = Call(*stub, "fail-once", &context, &reply);
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(reply, "ok");
  // Both attempts on one backend: each backend fails its own first call, so
  // a second attempt elsewhere would have failed too.
  EXPECT_EQ(std::max(a.service.calls.load(), b.service.calls.load()), 2);
  EXPECT_EQ(std::min(a.service.calls.load(), b.service.calls.load()), 0);
}

TEST(MethodConfigWarnings, HedgingAndUnknownFieldsAreReportedInTheSnapshot) {
  TestBackend backend;
  lbkit_test::TraceRecorder trace;
  auto channel =
      StaticChannel({backend.address()}, Config(R"({"name":[{"service":"grpc.examples.echo.Echo"}],
                 "hedgingPolicy":{"maxAttempts":2,"hedgingDelay":"0.1s",
                                  "nonFatalStatusCodes":["UNAVAILABLE"]},
                 "fancyNewField":1})"));
  ASSERT_TRUE(WaitFor([&] { return channel->Snapshot().config_warnings.size() == 2; }));
  std::vector<std::string> warnings = channel->Snapshot().config_warnings;
  std::string all = warnings[0] + "\n" + warnings[1];
  EXPECT_NE(all.find("methodConfig[0]: hedgingPolicy is not supported"), std::string::npos) << all;
  EXPECT_NE(all.find("\"fancyNewField\" is not supported"), std::string::npos) << all;
  EXPECT_EQ(trace.Count({"service config", "hedgingPolicy", "fancyNewField"}), 1);
}

TEST(MethodConfigUpdates, ANewLimitReachesNewSubchannelsAndLiveOnesAreWarnedAbout) {
  TestBackend first;
  TestBackend second;
  auto resolver = lbkit::ManualResolver::Create();
  auto limit = [](int bytes) {
    return Config(R"({"name":[{"service":"grpc.examples.echo.Echo"}],"maxResponseMessageBytes":)" +
                  std::to_string(bytes) + "}");
  };
  resolver->SetInitialState({{lbkit::Endpoint{{first.address()}}}, limit(1 << 20)});
  auto channel = lbkit_test::ManualChannel(resolver);
  ASSERT_TRUE(lbkit_test::WaitForReadySubchannels(*channel, 1));
  EXPECT_TRUE(channel->Snapshot().config_warnings.empty());
  // A smaller limit: the live subchannel keeps the old one, and says so.
  resolver->UpdateState(
      {{lbkit::Endpoint{{first.address()}}, lbkit::Endpoint{{second.address()}}}, limit(16)});
  ASSERT_TRUE(WaitFor([&] {
    std::vector<std::string> warnings = channel->Snapshot().config_warnings;
    return warnings.size() == 1 && warnings[0].find(
                                       "1 live subchannel(s) keep the previous "
                                       "ones") != std::string::npos;
  }));
  ASSERT_TRUE(lbkit_test::WaitForReadySubchannels(*channel, 2));
  // round_robin alternates: one of two calls lands on each subchannel; only
  // the new one enforces the new limit.
  auto stub = Echo::NewStub(channel);
  int exhausted = 0, ok = 0;
  for (int i = 0; i < 2; ++i) {
    grpc::ClientContext context;
    grpc::Status status =
        Call(*stub, "a message whose echo is longer than sixteen bytes", &context);
    if (status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) ++exhausted;
    if (status.ok()) ++ok;
  }
  EXPECT_EQ(exhausted, 1);
  EXPECT_EQ(ok, 1);
}

}  // namespace

namespace {

// As a plain grpc::Channel user would give it: ChannelArguments::SetServiceConfigJSON.
TEST(MethodConfigFromChannelArgs, AServiceConfigInChannelArgsIsTheDefaultConfig) {
  ProbeBackend backend;
  lbkit::ChannelOptions options;
  options.channel_args.SetServiceConfigJSON(EchoTimeout("0.5s"));
  options.channel_args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 60000);  // other args stay
  grpc::Status created;
  auto channel = lbkit::CreateChannel("static:///" + backend.address(),
                                      grpc::InsecureChannelCredentials(), options, &created);
  ASSERT_TRUE(created.ok()) << created.error_message();
  auto stub = Echo::NewStub(channel);
  ExpectDeadlineWithin(*stub, milliseconds(0), 500);
  EXPECT_EQ(channel->Snapshot().policy, "round_robin");
}

TEST(MethodConfigFromChannelArgs, TwoDifferentConfigsAreRefused) {
  lbkit::ChannelOptions options;
  options.channel_args.SetServiceConfigJSON(EchoTimeout("0.5s"));
  options.default_service_config = EchoTimeout("1s");
  grpc::Status created;
  auto channel = lbkit::CreateChannel("static:///127.0.0.1:1", grpc::InsecureChannelCredentials(),
                                      options, &created);
  EXPECT_EQ(created.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(created.error_message().find("service config is given twice"), std::string::npos)
      << created.error_message();
  ASSERT_NE(channel, nullptr);
}

}  // namespace
