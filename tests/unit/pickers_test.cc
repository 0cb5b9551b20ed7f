// Pick sequences of custom_round_robin and round_robin pickers.
#include <thread>

#include <gtest/gtest.h>

#include "core/subchannel.h"
#include "custom_round_robin.h"
#include "lbkit/testing/fake_helper.h"
#include "policies/round_robin.h"

namespace {

using lbkit::testing::PickAddresses;

// A pick_first-like child picker: always the same subchannel.
class FixedPicker final : public lbkit::Picker {
 public:
  explicit FixedPicker(std::string address)
      : subchannel_(
            lbkit::internal::SubchannelImpl::CreateForTesting(std::move(address), nullptr)) {}
  lbkit::PickResult Pick(const lbkit::PickArgs&) const override {
    return lbkit::PickResult::Complete(subchannel_.get());
  }

 private:
  std::shared_ptr<lbkit::Subchannel> subchannel_;
};

std::vector<std::string> CustomSequence(uint32_t choose_second, int n) {
  customlb::CustomRoundRobinPicker picker(std::make_shared<FixedPicker>("first"),
                                          std::make_shared<FixedPicker>("second"), choose_second);
  return PickAddresses(picker, n);
}

TEST(CustomRoundRobinPicker, ChooseSecondThreeSendsEveryThirdCallToTheSecond) {
  EXPECT_EQ(CustomSequence(3, 9),
            (std::vector<std::string>{"first", "first", "second", "first", "first", "second",
                                      "first", "first", "second"}));
}

TEST(CustomRoundRobinPicker, ChooseSecondTwoAlternates) {
  EXPECT_EQ(CustomSequence(2, 6),
            (std::vector<std::string>{"first", "second", "first", "second", "first", "second"}));
}

TEST(CustomRoundRobinPicker, ChooseSecondOneSendsEverythingToTheSecond) {
  EXPECT_EQ(CustomSequence(1, 4), std::vector<std::string>(4, "second"));
}

TEST(CustomRoundRobinPicker, ChooseSecondZeroNeverUsesTheSecond) {
  EXPECT_EQ(CustomSequence(0, 5), std::vector<std::string>(5, "first"));
}

TEST(CustomRoundRobinPicker, DelegatesQueueAndFailFromTheChosenChild) {
  customlb::CustomRoundRobinPicker picker(
      std::make_shared<lbkit::QueuePicker>(),
      std::make_shared<lbkit::FailPicker>(grpc::Status(grpc::StatusCode::UNAVAILABLE, "down")), 2);
  EXPECT_EQ(PickAddresses(picker, 2), (std::vector<std::string>{"queue", "fail: down"}));
}

TEST(RoundRobinPicker, EachThreadRotatesOverEveryChildInOrder) {
  std::vector<std::shared_ptr<lbkit::Picker>> children = {std::make_shared<FixedPicker>("a"),
                                                          std::make_shared<FixedPicker>("b"),
                                                          std::make_shared<FixedPicker>("c")};
  lbkit::internal::RoundRobinPicker picker(children, /*start=*/1);
  std::vector<std::string> picks = PickAddresses(picker, 7);
  const std::string order = "abc";
  for (size_t i = 1; i < picks.size(); ++i) {
    size_t previous = order.find(picks[i - 1]);
    EXPECT_EQ(picks[i], std::string(1, order[(previous + 1) % 3])) << "pick " << i;
  }
}

TEST(RoundRobinPicker, SpreadsEvenlyAcrossThreads) {
  std::vector<std::shared_ptr<lbkit::Picker>> children = {std::make_shared<FixedPicker>("a"),
                                                          std::make_shared<FixedPicker>("b")};
  lbkit::internal::RoundRobinPicker picker(children, 0);
  std::atomic<int> a{0}, b{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (const std::string& address : PickAddresses(picker, 1000)) (address == "a" ? a : b)++;
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(a.load(), 2000);
  EXPECT_EQ(b.load(), 2000);
}

}  // namespace
