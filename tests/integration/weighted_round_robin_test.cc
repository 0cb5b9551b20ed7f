// weighted_round_robin through a real channel to two real backends that
// send load reports (lbkit::AddLoadReportTrailer) with every reply: traffic
// moves away from the one that reports high utilization.
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>

#include <grpcpp/security/credentials.h>
#include <grpcpp/server.h>

#include "common/test_backend.h"
#include "echo_service.h"
#include "lbkit/lbkit.h"
#include "lbkit/server_load_report.h"

namespace {

using grpc::examples::echo::Echo;

// An echo backend on 127.0.0.1 (a port the kernel picks) whose every call
// reports 100 qps at CPU `utilization`.
class ReportingBackend {
 public:
  explicit ReportingBackend(double utilization) {
    service_.set_call_hook([utilization](grpc::ServerContext* context) {
      lbkit::LoadReport report;
      report.qps = 100;
      report.cpu_utilization = utilization;
      lbkit::AddLoadReportTrailer(context, report);
    });
    int port = 0;
    std::string error;
    server_ = lbkit_example::StartEchoServer("127.0.0.1:0", &service_, &port, &error);
    EXPECT_NE(server_, nullptr) << error;
    address_ = "127.0.0.1:" + std::to_string(port);
    service_.set_label(address_);
  }
  ~ReportingBackend() {
    if (server_ == nullptr) return;
    server_->Shutdown(std::chrono::system_clock::now());
    server_->Wait();
  }
  const std::string& address() const { return address_; }

 private:
  lbkit_example::EchoService service_{""};
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
};

// The backend named at the end of a reply ("... (from <address>)").
std::string Backend(const std::string& reply) {
  size_t from = reply.rfind("(from ");
  if (from == std::string::npos) return "bad reply: " + reply;
  return reply.substr(from + 6, reply.size() - from - 7);
}

std::map<std::string, int> Served(Echo::Stub& stub, int calls) {
  std::map<std::string, int> count;
  for (int i = 0; i < calls; ++i) ++count[Backend(lbkit_test::Echo(stub, "m"))];
  return count;
}

// busy reports CPU 0.9, idle 0.1, both 100 qps: weights 111 and 1000, so
// busy should get 10% of the calls once a weight update has run (every
// 100 ms here, no blackout). Until then round robin gives it half. The test
// waits (10 s at most) for a batch of 100 calls where busy served fewer than
// 25, then expects 400 more calls to give it 40 (sd 6) within ±30.
TEST(WeightedRoundRobin, TrafficMovesAwayFromABackendReportingHighUtilization) {
  ReportingBackend busy(0.9);
  ReportingBackend idle(0.1);
  auto channel = lbkit_test::StaticChannel(
      {busy.address(), idle.address()},
      R"({"loadBalancingConfig":[{"weighted_round_robin":{"blackoutPeriod":"0s",
          "weightUpdatePeriod":"0.1s"}}]})");
  ASSERT_TRUE(lbkit_test::WaitForReadySubchannels(*channel, 2));
  EXPECT_EQ(channel->Snapshot().policy, "weighted_round_robin");
  auto stub = Echo::NewStub(channel);

  std::map<std::string, int> first = Served(*stub, 2);
  EXPECT_EQ(first[busy.address()] + first[idle.address()], 2) << "every call succeeds";
  ASSERT_TRUE(lbkit_test::WaitFor([&] { return Served(*stub, 100)[busy.address()] < 25; }))
      << "the busy backend kept getting a fair share";
  std::map<std::string, int> count = Served(*stub, 400);
  EXPECT_EQ(count[busy.address()] + count[idle.address()], 400) << "every call succeeds";
  EXPECT_NEAR(count[busy.address()], 40, 30);
}

// enableOobLoadReport: true is refused where the config is given, saying why.
TEST(WeightedRoundRobin, OutOfBandReportingIsRefusedWithAClearError) {
  ReportingBackend backend(0.5);
  lbkit::ChannelOptions options;
  options.default_service_config =
      R"({"loadBalancingConfig":[{"weighted_round_robin":{"enableOobLoadReport":true}}]})";
  grpc::Status status;
  lbkit::CreateChannel("static:///" + backend.address(), grpc::InsecureChannelCredentials(),
                       options, &status);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("enableOobLoadReport"), std::string::npos);
  EXPECT_NE(status.error_message().find("not supported"), std::string::npos)
      << status.error_message();
}

}  // namespace
