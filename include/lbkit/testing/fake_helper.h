// A testing kit for policy authors: drive a Balancer in a unit test, with no
// channel, no network and no threads, through public headers only.
//
//   lbkit::testing::FakeHelper helper;
//   std::unique_ptr<lbkit::Balancer> policy;
//   ASSERT_TRUE(lbkit::testing::BuildBalancer("round_robin", "{}", &helper, &policy,
//                                             &config).ok());
//   policy->UpdateResolverState({endpoints, config});
//   helper.subchannel("10.0.0.1:80")->SetState(lbkit::ConnectivityState::kReady);
//   EXPECT_EQ(helper.last_state().state, lbkit::ConnectivityState::kReady);
//   EXPECT_EQ(lbkit::testing::PickAddresses(*helper.last_state().picker, 2), ...);
//
// What the fakes model: the Helper and Subchannel contracts of balancer.h, run
// synchronously on the test's thread. A state the test sets is delivered to
// the listener at once (the same filtering as a real subchannel: only changes,
// and TRANSIENT_FAILURE again only with a new reason); timers fire when the
// test advances the fake clock; posted work runs when the test says so.
//
// Thread-safety: none. Use a FakeHelper and its subchannels from one thread,
// the test's (which plays the part of the work serializer). Pickers published
// through it may be called from any thread, as always.
#ifndef LBKIT_TESTING_FAKE_HELPER_H_
#define LBKIT_TESTING_FAKE_HELPER_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <grpcpp/support/status.h>

#include "lbkit/balancer.h"
#include "lbkit/export.h"
#include "lbkit/load_report.h"
#include "lbkit/picker.h"

namespace lbkit {
namespace testing {

// A subchannel whose connectivity the test sets. Created by
// FakeHelper::CreateSubchannel; starts IDLE.
class LBKIT_EXPORT FakeSubchannel final : public Subchannel {
 public:
  ~FakeSubchannel() override;

  const std::string& address() const override { return address_; }
  ConnectivityState state() const override { return state_; }
  // Counted; the state does not change by itself (the test decides).
  void RequestConnection() override;
  // Counted.
  void ResetBackoff() override { ++backoff_resets_; }
  void Shutdown() override;

  // Delivers `state` (with `status`, the reason for TRANSIENT_FAILURE) to the
  // listener now, on this thread, as a real connection's report would be:
  // nothing if it equals the last state delivered, except TRANSIENT_FAILURE
  // with a different reason. Nothing after Shutdown().
  void SetState(ConnectivityState state, const grpc::Status& status = grpc::Status::OK);

  // How many times the policy asked this subchannel to connect (while not
  // shut down).
  int connection_requests() const { return connection_requests_; }
  int backoff_resets() const { return backoff_resets_; }
  bool is_shutdown() const { return shutdown_; }

 private:
  friend class FakeHelper;
  FakeSubchannel(std::string address, SubchannelStateListener listener);

  const std::string address_;
  SubchannelStateListener listener_;
  ConnectivityState state_ = ConnectivityState::kIdle;
  grpc::Status last_status_;
  int connection_requests_ = 0;
  int backoff_resets_ = 0;
  bool shutdown_ = false;
};

// A Helper that records what a balancer does with it.
class LBKIT_EXPORT FakeHelper final : public Helper {
 public:
  explicit FakeHelper(std::string target = "fake:///");
  ~FakeHelper() override;
  FakeHelper(const FakeHelper&) = delete;
  FakeHelper& operator=(const FakeHelper&) = delete;

  // Helper. CreateSubchannel never fails (a bad address is the test's
  // business). UpdateState requires a non-null picker, as the real one does,
  // and throws std::logic_error (a failed test) on a null one.
  std::shared_ptr<Subchannel> CreateSubchannel(const std::string& address,
                                               SubchannelStateListener listener) override;
  void UpdateState(BalancerState state) override;
  void RequestReresolution() override { ++reresolution_requests_; }
  std::unique_ptr<Timer> StartTimer(std::chrono::milliseconds delay,
                                    std::function<void()> fn) override;
  void Post(std::function<void()> fn) override { posted_.push_back(std::move(fn)); }
  const std::string& target() const override { return target_; }

  // Every subchannel created, in creation order, shut down ones included.
  const std::vector<std::shared_ptr<FakeSubchannel>>& subchannels() const { return subchannels_; }
  // The newest subchannel for `address` that is not shut down, or null.
  std::shared_ptr<FakeSubchannel> subchannel(const std::string& address) const;

  // Every state published, oldest first.
  const std::vector<BalancerState>& states() const { return states_; }
  // The last state published. Throws std::logic_error (a failed test) if
  // none was.
  const BalancerState& last_state() const;
  int reresolution_requests() const { return reresolution_requests_; }

  // The fake clock: runs, in deadline order, every timer due within `delay`
  // from now (timers started by those callbacks included, if due), then
  // moves the clock forward by `delay`.
  void AdvanceTime(std::chrono::milliseconds delay);
  // Runs every pending timer now, whatever its delay (the clock jumps to the
  // last one's deadline). Timers started by the callbacks wait for the next call.
  void FireTimers();
  size_t pending_timers() const { return timers_.size(); }
  // The fake clock's time since the helper was created.
  std::chrono::milliseconds now() const { return now_; }
  // Helper::Now(): the fake clock, as a steady_clock time point (its epoch
  // plus now()), so that policies comparing times follow AdvanceTime.
  std::chrono::steady_clock::time_point Now() const override {
    return std::chrono::steady_clock::time_point() + now_;
  }

  // Runs the callbacks given to Post so far (and those they post, in turn).
  void RunPosted();
  size_t pending_posts() const { return posted_.size(); }

 private:
  class FakeTimer;
  struct PendingTimer {
    std::chrono::milliseconds due;
    std::function<void()> fn;
  };

  std::string target_;
  std::vector<std::shared_ptr<FakeSubchannel>> subchannels_;
  std::vector<BalancerState> states_;
  std::vector<std::function<void()>> posted_;
  std::map<uint64_t, PendingTimer> timers_;  // by id: start order
  uint64_t next_timer_ = 0;
  std::chrono::milliseconds now_{0};
  int reresolution_requests_ = 0;
  // Cleared when the helper goes, so that timers outliving it do not touch it.
  std::shared_ptr<FakeHelper*> self_;
};

// Builds the registered policy `name` on `helper` and parses `config_json`
// (its own object, e.g. "{}" or R"({"choiceCount":3})") with its builder.
// Returns NOT_FOUND for an unknown name, the builder's error for a bad config,
// INVALID_ARGUMENT for JSON that does not parse; on success sets both outputs.
LBKIT_EXPORT grpc::Status BuildBalancer(const std::string& name, const std::string& config_json,
                                        Helper* helper, std::unique_ptr<Balancer>* balancer,
                                        std::shared_ptr<const BalancerConfig>* config);

// A call to pick for: owns what PickArgs points to.
struct LBKIT_EXPORT TestCall {
  std::string method = "/test.Service/Method";
  std::multimap<std::string, std::string> metadata;
  std::chrono::system_clock::time_point deadline = std::chrono::system_clock::time_point::max();
  bool wait_for_ready = false;

  // Views into this object: valid while it lives and is not changed.
  PickArgs args() const;
};

// "address" for a completed pick, "queue", or "fail: <message>". A completed
// pick whose attached metadata (PickResult::AddMetadata) a channel would
// refuse is "fail: <the INTERNAL message the call would get>". Runs the
// pick's done-callback, if any, as the channel would: with OK for a usable
// pick, with the failure otherwise.
LBKIT_EXPORT std::string Describe(PickResult result);
// Picks `n` times for `call` and describes each result.
LBKIT_EXPORT std::vector<std::string> PickAddresses(const Picker& picker, int n,
                                                    const TestCall& call = TestCall());

// The end of a call, to hand to a pick's done-callback in a test: a status,
// trailing metadata, and optionally the backend's load report, encoded as
// lbkit's server helper sends it (server_load_report.h).
//
//   lbkit::LoadReport report;
//   report.cpu_utilization = 0.9;
//   lbkit::testing::CallEnd().WithLoadReport(report).Finish(result);
class LBKIT_EXPORT CallEnd {
 public:
  explicit CallEnd(grpc::Status status = grpc::Status::OK) : status_(std::move(status)) {}

  CallEnd& WithTrailer(std::string key, std::string value);
  CallEnd& WithLoadReport(const LoadReport& report);

  // Runs `done` (if set) with a CallDoneInfo over this call end.
  void Deliver(const CallDoneCallback& done) const;
  // Runs the done-callback of a completed pick, if it has one.
  void Finish(PickResult& result) const { Deliver(result.on_done()); }

 private:
  grpc::Status status_;
  std::vector<std::pair<std::string, std::string>> trailers_;
};

}  // namespace testing
}  // namespace lbkit

#endif  // LBKIT_TESTING_FAKE_HELPER_H_
