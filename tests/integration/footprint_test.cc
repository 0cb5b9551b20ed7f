// What a channel costs the process in threads (issue 12): lbkit channels run
// their control plane on a fixed, process-wide pool, so a hundred channels
// have the threads one has.
#include <gtest/gtest.h>

#include <algorithm>

#include "common/test_backend.h"
#include "common/thread_count.h"
#include "core/work_serializer.h"
#include "lbkit/lbkit.h"

namespace {

using lbkit_test::TestBackend;

size_t CountLbkitThreads() {
  std::vector<std::string> names = lbkit_test::ThreadNameList();
  return static_cast<size_t>(std::count_if(
      names.begin(), names.end(), [](const std::string& n) { return n.rfind("lbkit-", 0) == 0; }));
}

TEST(Footprint, ChannelsAddNoThreads) {
  TestBackend a, b;
  const std::string config = R"({"loadBalancingConfig":[{"round_robin":{}}]})";
  // The first channel starts lbkit's process-wide threads.
  auto first = lbkit_test::StaticChannel({a.address(), b.address()}, config);
  auto first_stub = grpc::examples::echo::Echo::NewStub(first);
  ASSERT_EQ(lbkit_test::Echo(*first_stub, "m").rfind("m (from", 0), 0u);
  const size_t lbkit_before = CountLbkitThreads();
  const int all_before = lbkit_test::ThreadCount(lbkit_test::kGrpcTimerThreads);
  EXPECT_EQ(lbkit_test::CountThreadsNamed("lbkit-control"), lbkit::internal::ControlPoolSize());

  std::vector<std::shared_ptr<lbkit::Channel>> channels;
  for (int i = 0; i < 100; ++i) {
    channels.push_back(lbkit_test::StaticChannel({a.address(), b.address()}, config));
    auto stub = grpc::examples::echo::Echo::NewStub(channels.back());
    ASSERT_EQ(lbkit_test::Echo(*stub, "m").rfind("m (from", 0), 0u) << "channel " << i;
  }
  for (const auto& channel : channels) {
    ASSERT_TRUE(lbkit_test::WaitForReadySubchannels(*channel, 2));
  }
  EXPECT_EQ(CountLbkitThreads(), lbkit_before) << "lbkit threads grew with 100 channels";
  // gRPC's own pools may grow a little under the load (its timer threads
  // are left out, thread_count.h); a thread per channel would add 100.
  EXPECT_LT(lbkit_test::ThreadCount(lbkit_test::kGrpcTimerThreads), all_before + 10)
      << lbkit_test::ThreadNames();
  for (auto& channel : channels) channel->Shutdown();
}

}  // namespace
