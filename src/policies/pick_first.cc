#include "policies/pick_first.h"

#include <arpa/inet.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <mutex>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <absl/strings/str_join.h>

#include "core/address.h"

namespace lbkit {
namespace internal {
namespace {

std::atomic<int64_t> g_attempt_delay_ms{250};

class PickFirstConfig final : public BalancerConfig {
 public:
  bool shuffle_address_list = false;
};

// READY: every call goes to the one selected subchannel.
class SelectedPicker final : public Picker {
 public:
  explicit SelectedPicker(std::shared_ptr<Subchannel> subchannel)
      : subchannel_(std::move(subchannel)) {}
  PickResult Pick(const PickArgs&) const override {
    return PickResult::Complete(subchannel_.get());
  }

 private:
  std::shared_ptr<Subchannel> subchannel_;
};

// How an IDLE picker wakes its policy: the first pick posts one ExitIdle.
// The picker may outlive the policy (a parent may still hold it), so the
// policy disarms the token when it goes.
class WakeToken {
 public:
  WakeToken(Helper* helper, std::function<void()> exit_idle)
      : helper_(helper), exit_idle_(std::move(exit_idle)) {}
  void Fire() {
    std::lock_guard<std::mutex> lock(mu_);
    if (helper_ == nullptr || fired_) return;
    fired_ = true;
    helper_->Post(exit_idle_);
  }
  void Rearm() {
    std::lock_guard<std::mutex> lock(mu_);
    fired_ = false;
  }
  void Disarm() {
    std::lock_guard<std::mutex> lock(mu_);
    helper_ = nullptr;
  }

 private:
  std::mutex mu_;
  Helper* helper_;
  std::function<void()> exit_idle_;
  bool fired_ = false;
};

class PickFirst final : public Balancer {
 public:
  explicit PickFirst(Helper* helper)
      : helper_(helper), wake_(std::make_shared<WakeToken>(helper, [this] { ExitIdle(); })) {}
  ~PickFirst() override {
    wake_->Disarm();
    for (Entry& entry : list_) entry.subchannel->Shutdown();
  }

  grpc::Status UpdateResolverState(BalancerUpdate update) override {
    auto config = std::static_pointer_cast<const PickFirstConfig>(update.config);
    std::vector<std::string> addresses;
    for (const Endpoint& endpoint : update.endpoints) {
      addresses.insert(addresses.end(), endpoint.addresses.begin(), endpoint.addresses.end());
    }
    const bool shuffle = config != nullptr && config->shuffle_address_list;
    if (shuffle) {
      static thread_local std::mt19937_64 rng{std::random_device{}()};
      std::shuffle(addresses.begin(), addresses.end(), rng);
    }
    addresses = InterleaveAddressFamilies(addresses);
    if (!shuffle && addresses == addresses_ && !list_.empty()) {
      return grpc::Status::OK;  // nothing changed
    }
    addresses_ = addresses;
    if (addresses_.empty()) {
      ShutdownAll();
      last_error_ = grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                 "pick_first: the resolver returned no addresses");
      Report(ConnectivityState::kTransientFailure, std::make_shared<FailPicker>(last_error_),
             last_error_);
      return last_error_;
    }
    if (selected_ != nullptr &&
        std::find(addresses_.begin(), addresses_.end(), selected_->address()) != addresses_.end()) {
      return grpc::Status::OK;  // keep the working connection; the rest connect on demand
    }
    RebuildList();
    // Connect on the first update; later ones while IDLE wait for ExitIdle.
    if (!first_update_done_ || state_ != ConnectivityState::kIdle) {
      first_update_done_ = true;
      StartPass();
    }
    return grpc::Status::OK;
  }

  void ResolverError(const grpc::Status& status) override {
    if (!addresses_.empty()) return;  // keep serving what we have
    last_error_ = grpc::Status(grpc::StatusCode::UNAVAILABLE, status.error_message());
    Report(ConnectivityState::kTransientFailure, std::make_shared<FailPicker>(last_error_),
           last_error_);
  }

  void ExitIdle() override {
    wake_->Rearm();
    if (state_ != ConnectivityState::kIdle || addresses_.empty()) return;
    RebuildList();
    StartPass();
  }

  void ResetBackoff() override {
    for (Entry& entry : list_) entry.subchannel->ResetBackoff();
  }

 private:
  struct Entry {
    std::shared_ptr<Subchannel> subchannel;
    bool failed = false;  // in the current pass
  };

  // One entry per address, reusing subchannels we already have for it.
  void RebuildList() {
    std::vector<Entry> old = std::move(list_);
    list_.clear();
    for (const std::string& address : addresses_) {
      auto reuse = std::find_if(old.begin(), old.end(), [&](const Entry& e) {
        return e.subchannel != nullptr && e.subchannel->address() == address;
      });
      if (reuse != old.end()) {
        list_.push_back({std::move(reuse->subchannel), false});
        continue;
      }
      auto self = std::make_shared<Subchannel*>(nullptr);
      std::shared_ptr<Subchannel> subchannel = helper_->CreateSubchannel(
          address, [this, self](ConnectivityState state, const grpc::Status& status) {
            OnSubchannelState(*self, state, status);
          });
      *self = subchannel.get();
      list_.push_back({std::move(subchannel), false});
    }
    for (Entry& entry : old) {
      if (entry.subchannel != nullptr && entry.subchannel != selected_)
        entry.subchannel->Shutdown();
    }
    if (selected_ != nullptr && std::none_of(list_.begin(), list_.end(), [this](const Entry& e) {
          return e.subchannel == selected_;
        })) {
      selected_->Shutdown();
      selected_ = nullptr;
    }
  }

  void ShutdownAll() {
    attempt_timer_.reset();
    for (Entry& entry : list_) entry.subchannel->Shutdown();
    list_.clear();
    selected_ = nullptr;
  }

  // Starts a pass over the list from the first address. Subchannels already
  // in TRANSIENT_FAILURE (retrying under backoff, or unhealthy) count as
  // failed from the start: no event may come from them until they recover.
  void StartPass() {
    for (Entry& entry : list_) {
      if (entry.subchannel->state() == ConnectivityState::kReady) {
        Select(entry.subchannel);
        return;
      }
    }
    attempt_index_ = list_.size();
    for (size_t i = 0; i < list_.size(); ++i) {
      list_[i].failed = list_[i].subchannel->state() == ConnectivityState::kTransientFailure;
      if (!list_[i].failed && attempt_index_ == list_.size()) attempt_index_ = i;
    }
    if (attempt_index_ == list_.size()) {
      ReportAllFailed();
      return;
    }
    if (state_ != ConnectivityState::kTransientFailure) {
      Report(ConnectivityState::kConnecting, std::make_shared<QueuePicker>(), grpc::Status::OK);
    }
    Attempt();
  }

  void ReportAllFailed() {
    if (state_ != ConnectivityState::kTransientFailure) helper_->RequestReresolution();
    grpc::Status failure(grpc::StatusCode::UNAVAILABLE,
                         "pick_first: failed to connect to all addresses (" +
                             absl::StrJoin(addresses_, ", ") +
                             "); last error: " + last_error_.error_message());
    Report(ConnectivityState::kTransientFailure, std::make_shared<FailPicker>(failure), failure);
  }

  // Starts connecting list_[attempt_index_] and arms the timer for the next.
  void Attempt() {
    Entry& entry = list_[attempt_index_];
    if (entry.subchannel->state() == ConnectivityState::kIdle)
      entry.subchannel->RequestConnection();
    attempt_timer_.reset();
    if (attempt_index_ + 1 < list_.size()) {
      attempt_timer_ = helper_->StartTimer(ConnectionAttemptDelay(), [this] { NextAttempt(); });
    }
  }

  void NextAttempt() {
    attempt_timer_.reset();
    while (attempt_index_ + 1 < list_.size()) {
      ++attempt_index_;
      // Skip addresses that already failed in this pass; they retry on their own.
      if (!list_[attempt_index_].failed) {
        Attempt();
        return;
      }
    }
  }

  void OnSubchannelState(Subchannel* subchannel, ConnectivityState state,
                         const grpc::Status& status) {
    if (selected_ != nullptr && subchannel == selected_.get()) {
      if (state == ConnectivityState::kReady) return;
      // The connection we used is gone (or unhealthy): go IDLE until someone
      // needs us. Its subchannel stays in list_, to be reused when we
      // reconnect.
      if (!status.ok()) last_error_ = status;
      selected_ = nullptr;
      helper_->RequestReresolution();
      Report(ConnectivityState::kIdle,
             std::make_shared<QueuePicker>([wake = wake_] { wake->Fire(); }), grpc::Status::OK);
      return;
    }
    auto it = std::find_if(list_.begin(), list_.end(), [subchannel](const Entry& e) {
      return e.subchannel.get() == subchannel;
    });
    if (it == list_.end() || selected_ != nullptr) return;
    size_t index = static_cast<size_t>(it - list_.begin());
    switch (state) {
      case ConnectivityState::kReady:
        Select(it->subchannel);
        return;
      case ConnectivityState::kTransientFailure: {
        last_error_ = status;
        it->failed = true;
        if (index == attempt_index_) NextAttempt();  // don't wait out the delay
        if (std::all_of(list_.begin(), list_.end(), [](const Entry& e) { return e.failed; })) {
          ReportAllFailed();
        }
        return;
      }
      case ConnectivityState::kIdle:
        // Its backoff ended: try again (the state we report stays sticky).
        if (it->failed || index <= attempt_index_) it->subchannel->RequestConnection();
        return;
      case ConnectivityState::kConnecting:
      case ConnectivityState::kShutdown:
        return;
    }
  }

  void Select(const std::shared_ptr<Subchannel>& subchannel) {
    attempt_timer_.reset();
    selected_ = subchannel;
    for (Entry& entry : list_) {
      if (entry.subchannel != selected_) entry.subchannel->Shutdown();
    }
    list_.clear();
    list_.push_back({selected_, false});
    Report(ConnectivityState::kReady, std::make_shared<SelectedPicker>(selected_),
           grpc::Status::OK);
  }

  void Report(ConnectivityState state, std::shared_ptr<Picker> picker, grpc::Status status) {
    state_ = state;
    BalancerState update;
    update.state = state;
    update.picker = std::move(picker);
    update.status = std::move(status);
    helper_->UpdateState(std::move(update));
  }

  Helper* helper_;
  std::shared_ptr<WakeToken> wake_;
  std::vector<std::string> addresses_;
  std::vector<Entry> list_;
  std::shared_ptr<Subchannel> selected_;
  size_t attempt_index_ = 0;
  std::unique_ptr<Timer> attempt_timer_;
  ConnectivityState state_ = ConnectivityState::kIdle;
  bool first_update_done_ = false;
  grpc::Status last_error_;
};

class PickFirstBuilder final : public BalancerBuilder {
 public:
  std::string name() const override { return "pick_first"; }
  grpc::Status ParseConfig(const nlohmann::json& json,
                           std::shared_ptr<const BalancerConfig>* config) const override {
    auto parsed = std::make_shared<PickFirstConfig>();
    auto shuffle = json.find("shuffleAddressList");
    if (shuffle != json.end()) {
      if (!shuffle->is_boolean()) {
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                            "shuffleAddressList must be true or false, got " + shuffle->dump());
      }
      parsed->shuffle_address_list = shuffle->get<bool>();
    }
    *config = std::move(parsed);
    return grpc::Status::OK;
  }
  std::unique_ptr<Balancer> Build(Helper* helper) const override {
    return std::make_unique<PickFirst>(helper);
  }
};

}  // namespace

std::vector<std::string> InterleaveAddressFamilies(const std::vector<std::string>& addresses) {
  enum Family { kV6, kV4, kOther };
  auto family = [](const std::string& address) {
    switch (AddressIpFamily(address)) {
      case AF_INET6:
        return kV6;
      case AF_INET:
        return kV4;
      default:
        return kOther;
    }
  };
  std::vector<std::string> by_family[3];
  for (const std::string& address : addresses) by_family[family(address)].push_back(address);
  if (by_family[kV6].empty() || by_family[kV4].empty()) return addresses;
  const Family first = family(addresses[0]) == kV4 ? kV4 : kV6;
  const Family second = first == kV4 ? kV6 : kV4;
  std::vector<std::string> out;
  out.reserve(addresses.size());
  for (size_t i = 0; i < by_family[first].size() || i < by_family[second].size(); ++i) {
    if (i < by_family[first].size()) out.push_back(by_family[first][i]);
    if (i < by_family[second].size()) out.push_back(by_family[second][i]);
  }
  out.insert(out.end(), by_family[kOther].begin(), by_family[kOther].end());
  return out;
}

std::shared_ptr<const BalancerBuilder> MakePickFirstBuilder() {
  return std::make_shared<PickFirstBuilder>();
}

void SetConnectionAttemptDelayForTesting(std::chrono::milliseconds delay) {
  g_attempt_delay_ms.store(delay.count());
}

std::chrono::milliseconds ConnectionAttemptDelay() {
  return std::chrono::milliseconds(g_attempt_delay_ms.load());
}

}  // namespace internal
}  // namespace lbkit
