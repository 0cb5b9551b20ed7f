// Registration and discovery together, as a fleet uses them: servers
// register with EtcdRegistrar, a client finds them through "etcd://", and
// follows them as they leave (deregistration at shutdown) and come back,
// without losing a wait-for-ready call.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/security/credentials.h>

#include "common/etcd_cluster.h"
#include "common/test_backend.h"
#include "echo.grpc.pb.h"
#include "lbkit/channel.h"
#include "lbkit/etcd.h"

namespace {

using grpc::examples::echo::Echo;
using lbkit_test::EtcdCluster;
using lbkit_test::TestBackend;
using lbkit_test::WaitFor;

std::unique_ptr<lbkit::EtcdRegistrar> Registrar(const EtcdCluster& etcd,
                                                const TestBackend& backend) {
  lbkit::EtcdRegistrarOptions options;
  options.target = etcd.Target("echo");
  options.address = backend.address();
  options.ttl = std::chrono::seconds(5);
  std::unique_ptr<lbkit::EtcdRegistrar> registrar;
  grpc::Status status = lbkit::EtcdRegistrar::Create(options, &registrar);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return registrar;
}

// Wait-for-ready calls, back to back, on two threads; counts replies per
// backend and failures, until stopped.
class Callers {
 public:
  explicit Callers(Echo::Stub& stub) {
    for (int t = 0; t < 2; ++t) {
      threads_.emplace_back([this, &stub] {
        while (!stop_) {
          std::string reply =
              lbkit_test::Echo(stub, "hi", std::chrono::seconds(10), /*wait_for_ready=*/true);
          std::lock_guard<std::mutex> lock(mu_);
          size_t from = reply.rfind("(from ");
          if (reply.rfind("error", 0) == 0 || from == std::string::npos) {
            errors_.push_back(reply);
          } else {
            ++counts_[reply.substr(from + 6, reply.size() - from - 7)];
          }
        }
      });
    }
  }
  ~Callers() { Stop(); }
  void Stop() {
    stop_ = true;
    for (std::thread& thread : threads_) {
      if (thread.joinable()) thread.join();
    }
  }
  int Count(const std::string& address) {
    std::lock_guard<std::mutex> lock(mu_);
    return counts_[address];
  }
  std::vector<std::string> Errors() {
    std::lock_guard<std::mutex> lock(mu_);
    return errors_;
  }

 private:
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::map<std::string, int> counts_;
  std::vector<std::string> errors_;
};

TEST(EtcdEndToEnd, RegisteredServersAreFoundLeaveAtShutdownAndComeBack) {
  EtcdCluster etcd;
  ASSERT_TRUE(etcd.ok()) << etcd.error();
  TestBackend a, b;
  auto registrar_a = Registrar(etcd, a);
  auto registrar_b = Registrar(etcd, b);
  ASSERT_TRUE(registrar_a->WaitRegistered(std::chrono::seconds(10)));
  ASSERT_TRUE(registrar_b->WaitRegistered(std::chrono::seconds(10)));

  lbkit::ChannelOptions options;
  options.default_service_config = R"({"loadBalancingConfig":[{"round_robin":{}}]})";
  grpc::Status status;
  auto channel = lbkit::CreateChannel(etcd.Target("echo"), grpc::InsecureChannelCredentials(),
                                      options, &status);
  ASSERT_TRUE(status.ok()) << status.error_message();
  auto stub = Echo::NewStub(channel);
  Callers callers(*stub);

  // Both registered servers serve.
  EXPECT_TRUE(
      WaitFor([&] { return callers.Count(a.address()) > 0 && callers.Count(b.address()) > 0; }));

  // a deregisters (its key is deleted at once): calls stop reaching it
  // while it still runs, well before any lease could expire.
  registrar_a->Shutdown();
  ASSERT_TRUE(WaitFor([&] {
    for (const auto& sub : channel->Snapshot().subchannels) {
      if (sub.address == a.address()) return false;
    }
    return true;
  })) << "the channel still has a subchannel for the deregistered server";
  // At most the two calls in flight when the picker changed end on a.
  const int at_removal = callers.Count(a.address());
  const int b_before = callers.Count(b.address());
  EXPECT_TRUE(WaitFor([&] { return callers.Count(b.address()) > b_before + 50; }));
  EXPECT_LE(callers.Count(a.address()), at_removal + 2)
      << "calls still reach a deregistered server";

  // a registers again: it gets calls again.
  registrar_a = Registrar(etcd, a);
  ASSERT_TRUE(registrar_a->WaitRegistered(std::chrono::seconds(10)));
  const int a_before = callers.Count(a.address());
  EXPECT_TRUE(WaitFor([&] { return callers.Count(a.address()) > a_before; }));

  callers.Stop();
  EXPECT_TRUE(callers.Errors().empty()) << callers.Errors().front();
}

}  // namespace
