// random and least_request through a real channel to two real backends:
// calls succeed and are spread over both.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "common/test_backend.h"
#include "lbkit/lbkit.h"

namespace {

using grpc::examples::echo::Echo;
using lbkit_test::TestBackend;

// The backend address named at the end of a reply, or the reply itself.
std::string Backend(const std::string& reply) {
  size_t from = reply.rfind("(from ");
  if (from == std::string::npos) return "bad reply: " + reply;
  return reply.substr(from + 6, reply.size() - from - 7);
}

// 400 sync calls through a static channel to `addresses` under the policy
// `{"<policy>": <config>}`; how many each backend served (or the error).
std::map<std::string, int> Served(const std::vector<std::string>& addresses,
                                  const std::string& policy, const std::string& config) {
  auto channel = lbkit_test::StaticChannel(
      addresses, R"({"loadBalancingConfig":[{")" + policy + "\":" + config + "}]}");
  EXPECT_TRUE(lbkit_test::WaitForReadySubchannels(*channel, addresses.size()));
  EXPECT_EQ(channel->Snapshot().policy, policy);
  auto stub = Echo::NewStub(channel);
  std::map<std::string, int> count;
  for (int i = 0; i < 400; ++i) ++count[Backend(lbkit_test::Echo(*stub, "m"))];
  return count;
}

// static:///a;weight=3,b: 400 calls, 100 expected on b (sd 8.7); tolerance
// ±60 (about 7 sd).
TEST(BuiltinPolicies, RandomSpreadsCallsByWeight) {
  TestBackend a, b;
  std::map<std::string, int> count =
      Served({a.address() + ";weight=3", b.address()}, "random", "{}");
  EXPECT_EQ(count[a.address()] + count[b.address()], 400) << "every call succeeds";
  EXPECT_NEAR(count[b.address()], 100, 60);
}

// Sequential calls end before the next starts, so both backends are always at
// zero in flight and the first sample wins: an even split. 400 calls, 200
// expected each (sd 10); tolerance ±70.
TEST(BuiltinPolicies, LeastRequestSpreadsCallsAndTheyAllSucceed) {
  TestBackend a, b;
  std::map<std::string, int> count =
      Served({a.address(), b.address()}, "least_request", R"({"choiceCount":3})");
  EXPECT_EQ(count[a.address()] + count[b.address()], 400) << "every call succeeds";
  EXPECT_NEAR(count[a.address()], 200, 70);
}

}  // namespace
