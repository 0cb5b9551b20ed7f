// EtcdRegistrar against real etcd members: the keys it writes are checked
// directly in etcd (EtcdCluster::List), not through the resolver.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "common/etcd_cluster.h"
#include "common/test_backend.h"
#include "common/thread_count.h"
#include "discovery/etcd_common.h"
#include "lbkit/etcd.h"

namespace lbkit {
namespace {

using lbkit_test::EtcdCluster;
using lbkit_test::WaitFor;
using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

// The key `key` as etcd has it now: its value and lease; false when absent.
bool Lookup(EtcdCluster& cluster_, const std::string& key, std::string* value = nullptr,
            int64_t* lease = nullptr) {
  std::vector<std::string> keys, values;
  std::vector<int64_t> leases;
  if (!cluster_.List(key, &keys, &values, &leases).ok()) return false;
  for (size_t i = 0; i < keys.size(); ++i) {
    if (keys[i] != key) continue;
    if (value != nullptr) *value = values[i];
    if (lease != nullptr) *lease = leases[i];
    return true;
  }
  return false;
}

std::string Hex(int64_t lease) {
  char text[32];
  std::snprintf(text, sizeof(text), "%llx", static_cast<unsigned long long>(lease));
  return text;
}

std::unique_ptr<EtcdRegistrar> Start(const std::string& target, const std::string& address,
                                     seconds ttl, EndpointAttributes attributes = {}) {
  EtcdRegistrarOptions options;
  options.target = target;
  options.address = address;
  options.attributes = std::move(attributes);
  options.ttl = ttl;
  std::unique_ptr<EtcdRegistrar> registrar;
  grpc::Status status = EtcdRegistrar::Create(options, &registrar);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return registrar;
}

class EtcdRegistrarTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(cluster_.ok()) << cluster_.error(); }

  // A registrar for `address` under "echo", once it has registered; null
  // (and the test failed) when it did not within 10 s.
  std::unique_ptr<EtcdRegistrar> Registered(const std::string& address, seconds ttl,
                                            EndpointAttributes attributes = {}) {
    auto registrar = Start(cluster_.Target("echo"), address, ttl, std::move(attributes));
    if (registrar != nullptr && !registrar->WaitRegistered(seconds(10))) {
      ADD_FAILURE() << address << " not registered in 10 s: " << registrar->last_error();
      return nullptr;
    }
    return registrar;
  }

  // Waits until `key` is written again on a lease other than `old`, and the
  // registrar says it is registered.
  void ExpectReRegistered(const EtcdRegistrar& registrar, const std::string& key, int64_t old,
                          seconds timeout) {
    int64_t lease = 0;
    EXPECT_TRUE(WaitFor(
        [&] { return Lookup(cluster_, key, nullptr, &lease) && lease != old && lease != 0; },
        timeout))
        << "lease " << old << " -> " << lease << ", last error: " << registrar.last_error();
    EXPECT_TRUE(WaitFor([&] { return registrar.registered(); }, seconds(5)));
  }

  EtcdCluster cluster_;
};

TEST_F(EtcdRegistrarTest, WritesTheGoStyleValueWithALease) {
  EndpointAttributes attributes;
  attributes.weight = 3;
  attributes.hash_key = "k1";
  attributes.values["zone"] = "eu";
  auto registrar = Registered("127.0.0.1:7001", seconds(10), attributes);
  ASSERT_NE(registrar, nullptr);
  EXPECT_TRUE(registrar->registered());
  EXPECT_EQ(registrar->last_error(), "");

  std::string value;
  int64_t lease = 0;
  ASSERT_TRUE(Lookup(cluster_, "echo/127.0.0.1:7001", &value, &lease));
  EXPECT_NE(lease, 0) << "the key must live on a lease, so a dead server disappears";
  internal::EtcdEndpointValue decoded;
  ASSERT_TRUE(internal::DecodeEtcdEndpoint(value, &decoded).ok()) << value;
  EXPECT_FALSE(decoded.remove);
  EXPECT_EQ(decoded.endpoint.addresses, std::vector<std::string>{"127.0.0.1:7001"});
  EXPECT_EQ(decoded.endpoint.attributes, attributes);
  // Go's naming package reads these members (in any order).
  EXPECT_NE(value.find(R"("Op":0)"), std::string::npos) << value;
  EXPECT_NE(value.find(R"("Addr":"127.0.0.1:7001")"), std::string::npos) << value;
  EXPECT_NE(value.find(R"("weight":3)"), std::string::npos) << value;
}

TEST_F(EtcdRegistrarTest, ShutdownDeletesTheKeyAtOnce) {
  // A TTL far longer than the test: only the revocation can remove the key.
  auto registrar = Registered("127.0.0.1:7002", seconds(600));
  ASSERT_NE(registrar, nullptr);
  int64_t lease = 0;
  ASSERT_TRUE(Lookup(cluster_, "echo/127.0.0.1:7002", nullptr, &lease));

  registrar->Shutdown(seconds(2));
  EXPECT_FALSE(Lookup(cluster_, "echo/127.0.0.1:7002"));
  EXPECT_FALSE(registrar->registered());
  // The lease is revoked as well: revoking it again fails.
  EXPECT_NE(cluster_.Etcdctl({"lease", "revoke", Hex(lease)}), 0);
  registrar->Shutdown(seconds(2));  // idempotent
  registrar.reset();
  EXPECT_FALSE(Lookup(cluster_, "echo/127.0.0.1:7002"));
}

// Two registrars for one address (a new instance started on the port of
// one that is stopping): the old one's shutdown must not take the new one's
// registration with it, since the new one's keepalives would go on
// succeeding and it would never write its key again.
TEST_F(EtcdRegistrarTest, ShutdownLeavesAKeyAnotherRegistrarWroteSince) {
  auto old_instance = Registered("127.0.0.1:7009", seconds(600));
  ASSERT_NE(old_instance, nullptr);
  int64_t old_lease = 0;
  ASSERT_TRUE(Lookup(cluster_, "echo/127.0.0.1:7009", nullptr, &old_lease));
  auto new_instance = Registered("127.0.0.1:7009", seconds(600));
  ASSERT_NE(new_instance, nullptr);
  int64_t new_lease = 0;
  ASSERT_TRUE(WaitFor([&] {
    return Lookup(cluster_, "echo/127.0.0.1:7009", nullptr, &new_lease) && new_lease != old_lease;
  }));

  old_instance->Shutdown(seconds(2));
  int64_t lease = 0;
  EXPECT_TRUE(Lookup(cluster_, "echo/127.0.0.1:7009", nullptr, &lease))
      << "the old instance's shutdown deleted the new instance's key";
  EXPECT_EQ(lease, new_lease);
  new_instance->Shutdown(seconds(2));
  EXPECT_FALSE(Lookup(cluster_, "echo/127.0.0.1:7009"));
}

TEST_F(EtcdRegistrarTest, ReRegistersWhenTheLeaseIsRevoked) {
  auto registrar = Registered("127.0.0.1:7003", seconds(3));
  ASSERT_NE(registrar, nullptr);
  int64_t first = 0;
  ASSERT_TRUE(Lookup(cluster_, "echo/127.0.0.1:7003", nullptr, &first));
  ASSERT_NE(first, 0);

  ASSERT_EQ(cluster_.Etcdctl({"lease", "revoke", Hex(first)}), 0);
  // The revoke removed the key; the next keepalive (every second) learns the
  // lease is gone, and the key comes back on a new one.
  ExpectReRegistered(*registrar, "echo/127.0.0.1:7003", first, seconds(10));
}

TEST_F(EtcdRegistrarTest, IsRegisteredAgainAfterEtcdRestarts) {
  auto registrar = Registered("127.0.0.1:7004", seconds(3));
  ASSERT_NE(registrar, nullptr);

  cluster_.Kill(0);
  // The keepalive stream breaks: no longer known to be registered.
  EXPECT_TRUE(WaitFor([&] { return !registrar->registered(); }, seconds(10)));
  EXPECT_NE(registrar->last_error(), "");
  ASSERT_TRUE(cluster_.Restart(0));
  // Either the old lease survived the restart (etcd renews leases on
  // recovery) and keepalives resume, or it expired and a new one is used:
  // both end with the key in etcd and the registrar saying so.
  EXPECT_TRUE(
      WaitFor([&] { return registrar->registered() && Lookup(cluster_, "echo/127.0.0.1:7004"); },
              seconds(20)))
      << registrar->last_error();
  EXPECT_EQ(registrar->last_error(), "");
}

// etcd silent for longer than the TTL: the lease must be taken as expired,
// whatever etcd says once it is back, and the key written on a new one.
TEST_F(EtcdRegistrarTest, StartsOverWhenEtcdWasSilentForLongerThanTheTtl) {
  lbkit_test::TraceRecorder trace;
  auto registrar = Registered("127.0.0.1:7008", seconds(2));
  ASSERT_NE(registrar, nullptr);
  int64_t first = 0;
  ASSERT_TRUE(Lookup(cluster_, "echo/127.0.0.1:7008", nullptr, &first));

  cluster_.Freeze(0);
  EXPECT_TRUE(WaitFor(
      [&] {
        return trace.Count({"no keepalive for", "registering again"}) > 0;
      },
      seconds(10)));
  cluster_.Thaw(0);
  ExpectReRegistered(*registrar, "echo/127.0.0.1:7008", first, seconds(15));
}

TEST_F(EtcdRegistrarTest, AddsNoThreadPerRegistrar) {
  // One first, so that the process-wide threads (lbkit's IoLoop, gRPC's
  // own) exist before counting. gRPC's timer pool is left out of the count
  // (thread_count.h): it grows with timers firing at once, not with them.
  auto first = Registered("127.0.0.1:7100", seconds(3));
  ASSERT_NE(first, nullptr);
  const int before = lbkit_test::ThreadCount(lbkit_test::kGrpcTimerThreads);
  const std::string names_before = lbkit_test::ThreadNames();
  ASSERT_GT(before, 0);

  constexpr int kRegistrars = 20;
  std::vector<std::unique_ptr<EtcdRegistrar>> registrars;
  for (int i = 1; i <= kRegistrars; ++i) {
    registrars.push_back(
        Start(cluster_.Target("echo"), "127.0.0.1:" + std::to_string(7100 + i), seconds(3)));
    ASSERT_NE(registrars.back(), nullptr);
  }
  // Each of them registers, and keeps its lease alive (a keepalive a second).
  for (int i = 0; i < kRegistrars; ++i) {
    EXPECT_TRUE(registrars[i]->WaitRegistered(seconds(10))) << i << registrars[i]->last_error();
  }
  std::vector<std::string> keys;
  ASSERT_TRUE(cluster_.List("echo/", &keys).ok());
  EXPECT_EQ(keys.size(), size_t{kRegistrars + 1});
  EXPECT_EQ(lbkit_test::ThreadCount(lbkit_test::kGrpcTimerThreads), before)
      << "before: " << names_before << "\nnow: " << lbkit_test::ThreadNames();
  // Past a TTL, they are all still registered.
  const int64_t revision = cluster_.Revision();
  std::this_thread::sleep_for(seconds(4));  // the TTL passing is what is tested
  for (int i = 0; i < kRegistrars; ++i) EXPECT_TRUE(registrars[i]->registered()) << i;
  EXPECT_EQ(cluster_.Revision(), revision);  // no key expired and was written again
  EXPECT_EQ(lbkit_test::ThreadCount(lbkit_test::kGrpcTimerThreads), before)
      << "before: " << names_before << "\nnow: " << lbkit_test::ThreadNames();

  for (auto& registrar : registrars) registrar->Shutdown(seconds(2));
  ASSERT_TRUE(cluster_.List("echo/", &keys).ok());
  EXPECT_EQ(keys.size(), 1u);
}

TEST(EtcdRegistrarOptionsTest, RejectsBadOptionsNamingTheProblem) {
  auto error = [](EtcdRegistrarOptions options) {
    std::unique_ptr<EtcdRegistrar> registrar;
    grpc::Status status = EtcdRegistrar::Create(options, &registrar);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_EQ(registrar, nullptr);
    return status.error_message();
  };
  EtcdRegistrarOptions good;
  good.target = "etcd://127.0.0.1:2379/echo";
  good.address = "127.0.0.1:7005";

  EtcdRegistrarOptions options = good;
  options.target = "etcd://127.0.0.1:2379/";
  EXPECT_NE(error(options).find("no service name"), std::string::npos);
  options.target = "dns:///echo";
  EXPECT_NE(error(options).find("etcd://"), std::string::npos);
  options = good;
  options.address = "";
  EXPECT_NE(error(options).find("address"), std::string::npos);
  options.address = "127.0.0.1";
  EXPECT_NE(error(options).find("no port"), std::string::npos);
  options.address = "[::1]";
  EXPECT_NE(error(options).find("address"), std::string::npos);
  options.address = "127.0.0.1:70000";
  EXPECT_NE(error(options).find("address"), std::string::npos);
  options.address = "0.0.0.0:7005";
  EXPECT_NE(error(options).find("wildcard"), std::string::npos);
  options.address = "[::]:7005";
  EXPECT_NE(error(options).find("wildcard"), std::string::npos);
  options = good;
  options.attributes.weight = 0;
  EXPECT_NE(error(options).find("weight"), std::string::npos);
  options = good;
  options.attributes.values["weight"] = "5";
  EXPECT_NE(error(options).find("free-form value named \"weight\""), std::string::npos);
  options = good;
  options.ttl = seconds(0);
  EXPECT_NE(error(options).find("ttl"), std::string::npos);
}

// Never reached etcd (its connections hang): nothing to remove, and
// Shutdown() does not wait for the attempt in flight.
TEST(EtcdRegistrarOptionsTest, ShutdownIsPromptWhenEtcdNeverAnswered) {
  lbkit_test::BlackholeListener blackhole;
  auto registrar = Start("etcd://" + blackhole.address() + "/echo", "127.0.0.1:7006", seconds(3));
  ASSERT_NE(registrar, nullptr);
  EXPECT_FALSE(registrar->WaitRegistered(milliseconds(300)));
  auto start = Clock::now();
  registrar->Shutdown(milliseconds(500));
  EXPECT_LT(Clock::now() - start, milliseconds(1500));
}

// Shutdown's delete and revoke are bounded by its timeout when etcd stopped
// answering (frozen: connections stay open, nothing comes back) or is gone
// (connections refused).
TEST_F(EtcdRegistrarTest, ShutdownReturnsWithinItsTimeoutWhenEtcdIsDown) {
  auto frozen = Registered("127.0.0.1:7006", seconds(3));
  ASSERT_NE(frozen, nullptr);
  cluster_.Freeze(0);
  auto start = Clock::now();
  frozen->Shutdown(milliseconds(500));
  EXPECT_LT(Clock::now() - start, milliseconds(1500));
  cluster_.Thaw(0);

  auto registrar = Registered("127.0.0.1:7007", seconds(3));
  ASSERT_NE(registrar, nullptr);
  cluster_.Kill(0);
  start = Clock::now();
  registrar->Shutdown(milliseconds(500));
  EXPECT_LT(Clock::now() - start, milliseconds(1500));
}

// The example server, run as a user runs it, with --register.
class EchoServerProcess {
 public:
  EchoServerProcess(const std::string& target, int ttl_seconds) {
    char dir[] = "/tmp/lbkit-registrar-XXXXXX";
    if (mkdtemp(dir) != nullptr) dir_ = dir;
    log_ = dir_ + "/server.log";
    pid_ = lbkit_test::SpawnProcess({LBKIT_ECHO_SERVER, "--addrs", "127.0.0.1:0", "--register",
                                     target, "--ttl", std::to_string(ttl_seconds)},
                                    log_);
  }
  ~EchoServerProcess() {
    if (pid_ > 0) Signal(SIGKILL);
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
  std::string Log() const {
    std::ifstream in(log_);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  }
  // The address it registered, from its "registered <addr> in <target>"
  // line; "" until then.
  std::string Registered() const {
    std::istringstream log(Log());
    const std::string prefix = "registered ";
    for (std::string line; std::getline(log, line);) {
      size_t end = line.find(" in ");
      if (line.rfind(prefix, 0) == 0 && end != std::string::npos) {
        return line.substr(prefix.size(), end - prefix.size());
      }
    }
    return "";
  }
  // Sends `signal` and reaps the process; returns its wait status.
  int Signal(int signal) {
    kill(pid_, signal);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return status;
  }

 private:
  std::string dir_;
  std::string log_;
  pid_t pid_ = -1;
};

// The key `server` registered, once it says so and etcd has it; "" (and the
// test failed) when that takes more than 10 s.
std::string ServerKey(const EchoServerProcess& server) {
  if (!WaitFor([&] { return !server.Registered().empty(); }, seconds(10))) {
    ADD_FAILURE() << "the server did not register in 10 s: " << server.Log();
    return "";
  }
  return "echo/" + server.Registered();
}

TEST_F(EtcdRegistrarTest, KilledServerDisappearsWithinItsTtl) {
  EchoServerProcess server(cluster_.Target("echo"), 2);
  const std::string key = ServerKey(server);
  ASSERT_NE(key, "");

  ASSERT_TRUE(Lookup(cluster_, key)) << server.Log();
  server.Signal(SIGKILL);
  auto killed = Clock::now();
  // Nothing deleted it: it goes with its lease, not before.
  EXPECT_TRUE(Lookup(cluster_, key));
  EXPECT_TRUE(WaitFor([&] { return !Lookup(cluster_, key); }, seconds(2 + 2)));
  EXPECT_LT(Clock::now() - killed, seconds(2 + 2));
}

TEST_F(EtcdRegistrarTest, StoppedServerDeregistersAtOnce) {
  // A TTL far longer than the test: only the server's delete removes the key.
  EchoServerProcess server(cluster_.Target("echo"), 600);
  const std::string key = ServerKey(server);
  ASSERT_NE(key, "");

  ASSERT_TRUE(Lookup(cluster_, key)) << server.Log();
  int status = server.Signal(SIGTERM);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << server.Log();
  EXPECT_FALSE(Lookup(cluster_, key)) << server.Log();
}

}  // namespace
}  // namespace lbkit
