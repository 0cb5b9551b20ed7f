// FakeHelper: drives a balancer in a unit test, synchronously, with test
// subchannels whose states the test sets.
#ifndef LBKIT_TESTS_COMMON_FAKE_HELPER_H_
#define LBKIT_TESTS_COMMON_FAKE_HELPER_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/subchannel.h"
#include "lbkit/balancer.h"

namespace lbkit_test {

class FakeHelper final : public lbkit::Helper {
 public:
  std::shared_ptr<lbkit::Subchannel> CreateSubchannel(
      const std::string& address, lbkit::SubchannelStateListener listener) override {
    auto subchannel =
        lbkit::internal::SubchannelImpl::CreateForTesting(address, std::move(listener));
    created.push_back(subchannel);
    return subchannel;
  }
  void UpdateState(lbkit::BalancerState state) override { states.push_back(std::move(state)); }
  void RequestReresolution() override { ++reresolutions; }
  std::unique_ptr<lbkit::Timer> StartTimer(std::chrono::milliseconds,
                                           std::function<void()> fn) override {
    int id = next_timer_++;
    timers_[id] = std::move(fn);
    return std::make_unique<FakeTimer>(this, id);
  }
  void Post(std::function<void()> fn) override { posted.push_back(std::move(fn)); }
  const std::string& target() const override { return target_; }

  // Runs every pending timer (as if their delays passed).
  void FireTimers() {
    auto timers = std::move(timers_);
    timers_.clear();
    for (auto& timer : timers) timer.second();
  }
  size_t pending_timers() const { return timers_.size(); }
  void RunPosted() {
    auto posted_now = std::move(posted);
    posted.clear();
    for (auto& fn : posted_now) fn();
  }
  // The newest live subchannel for `address`, or null.
  std::shared_ptr<lbkit::internal::SubchannelImpl> Find(const std::string& address) const {
    for (auto it = created.rbegin(); it != created.rend(); ++it) {
      if ((*it)->address() == address && !(*it)->is_shutdown()) return *it;
    }
    return nullptr;
  }
  const lbkit::BalancerState& last() const { return states.back(); }

  std::vector<std::shared_ptr<lbkit::internal::SubchannelImpl>> created;
  std::vector<lbkit::BalancerState> states;
  std::vector<std::function<void()>> posted;
  int reresolutions = 0;

 private:
  class FakeTimer final : public lbkit::Timer {
   public:
    FakeTimer(FakeHelper* helper, int id) : helper_(helper), id_(id) {}
    ~FakeTimer() override { helper_->timers_.erase(id_); }

   private:
    FakeHelper* helper_;
    int id_;
  };

  std::map<int, std::function<void()>> timers_;
  int next_timer_ = 0;
  std::string target_ = "fake:///";
};

// Picks `n` times and returns the address each pick chose ("queue" or
// "fail: <message>" otherwise).
inline std::vector<std::string> PickSequence(const lbkit::Picker& picker, int n) {
  std::vector<std::string> out;
  std::multimap<std::string, std::string> metadata;
  lbkit::PickArgs args;
  args.method = "/grpc.examples.echo.Echo/UnaryEcho";
  args.metadata = &metadata;
  for (int i = 0; i < n; ++i) {
    lbkit::PickResult result = picker.Pick(args);
    switch (result.kind()) {
      case lbkit::PickResult::Kind::kComplete:
        out.push_back(result.subchannel()->address());
        break;
      case lbkit::PickResult::Kind::kQueue:
        out.push_back("queue");
        break;
      case lbkit::PickResult::Kind::kFail:
        out.push_back("fail: " + result.status().error_message());
        break;
    }
  }
  return out;
}

}  // namespace lbkit_test

#endif  // LBKIT_TESTS_COMMON_FAKE_HELPER_H_
