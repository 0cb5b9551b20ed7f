#include "lbkit/testing/fake_helper.h"

#include <algorithm>
#include <stdexcept>
#include <utility>

#include <nlohmann/json.hpp>

#include "core/call_info.h"
#include "lbkit/registry.h"
#include "lbkit/server_load_report.h"

namespace lbkit {
namespace testing {

FakeSubchannel::FakeSubchannel(std::string address, SubchannelStateListener listener)
    : address_(std::move(address)), listener_(std::move(listener)) {}

FakeSubchannel::~FakeSubchannel() = default;

void FakeSubchannel::RequestConnection() {
  if (!shutdown_) ++connection_requests_;
}

void FakeSubchannel::Shutdown() {
  if (shutdown_) return;
  shutdown_ = true;
  SubchannelStateListener listener = std::move(listener_);  // released here, not in a callback
  listener_ = nullptr;
}

void FakeSubchannel::SetState(ConnectivityState state, const grpc::Status& status) {
  if (shutdown_) return;
  if (state == state_ && (state != ConnectivityState::kTransientFailure ||
                          status.error_message() == last_status_.error_message())) {
    return;
  }
  state_ = state;
  last_status_ = status;
  // A copy: the listener may shut this subchannel down (and so release the
  // original) while it runs.
  SubchannelStateListener listener = listener_;
  if (listener) listener(state, status);
}

class FakeHelper::FakeTimer final : public Timer {
 public:
  FakeTimer(std::weak_ptr<FakeHelper*> helper, uint64_t id) : helper_(std::move(helper)), id_(id) {}
  ~FakeTimer() override {
    if (std::shared_ptr<FakeHelper*> helper = helper_.lock()) (*helper)->timers_.erase(id_);
  }

 private:
  std::weak_ptr<FakeHelper*> helper_;
  uint64_t id_;
};

FakeHelper::FakeHelper(std::string target)
    : target_(std::move(target)), self_(std::make_shared<FakeHelper*>(this)) {}

FakeHelper::~FakeHelper() = default;

std::shared_ptr<Subchannel> FakeHelper::CreateSubchannel(const std::string& address,
                                                         SubchannelStateListener listener) {
  std::shared_ptr<FakeSubchannel> subchannel(new FakeSubchannel(address, std::move(listener)));
  subchannels_.push_back(subchannel);
  return subchannel;
}

void FakeHelper::UpdateState(BalancerState state) {
  if (state.picker == nullptr) {
    throw std::logic_error(
        "lbkit::testing::FakeHelper: the policy published a null picker (state " +
        std::string(ToString(state.state)) + ")");
  }
  states_.push_back(std::move(state));
}

std::unique_ptr<Timer> FakeHelper::StartTimer(std::chrono::milliseconds delay,
                                              std::function<void()> fn) {
  const uint64_t id = next_timer_++;
  timers_[id] = PendingTimer{now_ + std::max(delay, std::chrono::milliseconds(0)), std::move(fn)};
  return std::make_unique<FakeTimer>(self_, id);
}

std::shared_ptr<FakeSubchannel> FakeHelper::subchannel(const std::string& address) const {
  for (auto it = subchannels_.rbegin(); it != subchannels_.rend(); ++it) {
    if ((*it)->address() == address && !(*it)->is_shutdown()) return *it;
  }
  return nullptr;
}

const BalancerState& FakeHelper::last_state() const {
  if (states_.empty()) {
    throw std::logic_error("lbkit::testing::FakeHelper: the policy has published no state yet");
  }
  return states_.back();
}

void FakeHelper::AdvanceTime(std::chrono::milliseconds delay) {
  const std::chrono::milliseconds until = now_ + std::max(delay, std::chrono::milliseconds(0));
  for (;;) {
    // The earliest due timer; among equal deadlines, the first started.
    auto next = timers_.end();
    for (auto it = timers_.begin(); it != timers_.end(); ++it) {
      if (it->second.due <= until && (next == timers_.end() || it->second.due < next->second.due))
        next = it;
    }
    if (next == timers_.end()) break;
    now_ = std::max(now_, next->second.due);
    std::function<void()> fn = std::move(next->second.fn);
    timers_.erase(next);  // a timer fires once; its handle's destructor then finds nothing
    fn();
  }
  now_ = until;
}

void FakeHelper::FireTimers() {
  // The timers pending now, in start order; one cancelled by an earlier
  // callback (its handle destroyed) does not run, as with a real timer.
  std::vector<uint64_t> ids;
  ids.reserve(timers_.size());
  for (const auto& entry : timers_) ids.push_back(entry.first);
  for (uint64_t id : ids) {
    auto it = timers_.find(id);
    if (it == timers_.end()) continue;
    now_ = std::max(now_, it->second.due);
    std::function<void()> fn = std::move(it->second.fn);
    timers_.erase(it);
    fn();
  }
}

void FakeHelper::RunPosted() {
  while (!posted_.empty()) {
    std::vector<std::function<void()>> now = std::move(posted_);
    posted_.clear();
    for (auto& fn : now) fn();
  }
}

grpc::Status BuildBalancer(const std::string& name, const std::string& config_json, Helper* helper,
                           std::unique_ptr<Balancer>* balancer,
                           std::shared_ptr<const BalancerConfig>* config) {
  std::shared_ptr<const BalancerBuilder> builder = FindBalancer(name);
  if (builder == nullptr) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND, "no policy registered as \"" + name + "\"");
  }
  nlohmann::json json = nlohmann::json::parse(config_json, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "config for \"" + name + "\" is not valid JSON");
  }
  std::shared_ptr<const BalancerConfig> parsed;
  grpc::Status status = builder->ParseConfig(json, &parsed);
  if (!status.ok()) return status;
  *balancer = builder->Build(helper);
  *config = std::move(parsed);
  return grpc::Status::OK;
}

PickArgs TestCall::args() const {
  PickArgs args;
  args.method = method;
  args.metadata = &metadata;
  args.deadline = deadline;
  args.wait_for_ready = wait_for_ready;
  return args;
}

std::string Describe(PickResult result) {
  switch (result.kind()) {
    case PickResult::Kind::kComplete: {
      if (result.subchannel() == nullptr) return "complete without a subchannel";
      if (result.metadata() != nullptr) {
        grpc::Status checked = internal::CheckPickMetadata(*result.metadata());
        if (!checked.ok()) {
          CallEnd(checked).Finish(result);
          return "fail: " + checked.error_message();
        }
      }
      std::string address = result.subchannel()->address();
      CallEnd().Finish(result);
      return address;
    }
    case PickResult::Kind::kQueue:
      return "queue";
    case PickResult::Kind::kFail:
      return "fail: " + result.status().error_message();
  }
  return "unknown";
}

std::vector<std::string> PickAddresses(const Picker& picker, int n, const TestCall& call) {
  std::vector<std::string> out;
  out.reserve(n > 0 ? static_cast<size_t>(n) : 0);
  const PickArgs args = call.args();
  for (int i = 0; i < n; ++i) out.push_back(Describe(picker.Pick(args)));
  return out;
}

CallEnd& CallEnd::WithTrailer(std::string key, std::string value) {
  trailers_.emplace_back(std::move(key), std::move(value));
  return *this;
}

CallEnd& CallEnd::WithLoadReport(const LoadReport& report) {
  return WithTrailer(kLbkitLoadReportTrailer, SerializeLoadReport(report));
}

void CallEnd::Deliver(const CallDoneCallback& done) const {
  if (!done) return;
  CallDoneInfo::Metadata trailers;
  for (const auto& [key, value] : trailers_) trailers.emplace(key, value);
  done(CallDoneInfo(status_, &trailers));
}

}  // namespace testing
}  // namespace lbkit
