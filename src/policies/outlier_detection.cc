#include "policies/outlier_detection.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <random>
#include <tuple>
#include <typeinfo>
#include <unordered_map>
#include <utility>
#include <vector>

#include "lbkit/endpoint_sharding.h"
#include "lbkit/registry.h"
#include "lbkit/service_config.h"
#include "policies/duration.h"

namespace lbkit {
namespace internal {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::nanoseconds;

// ---------------------------------------------------------------------------
// Config parsing

grpc::Status Invalid(const std::string& message) {
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, message);
}

// A whole number from 0 to `max` (a protobuf UInt32Value; percentages to 100).
grpc::Status ParseUint32(const nlohmann::json& json, const std::string& prefix, const char* name,
                         uint64_t max, uint32_t* out) {
  auto field = json.find(name);
  if (field == json.end()) return grpc::Status::OK;
  auto bad = [&] {
    return Invalid(prefix + name + " must be a whole number from 0 to " + std::to_string(max) +
                   ", got " + field->dump());
  };
  uint64_t value = 0;
  if (field->is_number_unsigned()) {
    value = field->get<uint64_t>();
  } else if (field->is_number_float()) {
    const double d = field->get<double>();
    if (!(d >= 0) || std::floor(d) != d || d > static_cast<double>(max)) return bad();
    value = static_cast<uint64_t>(d);
  } else {
    return bad();  // negative integers, strings, booleans, null, objects
  }
  if (value > max) return bad();
  *out = static_cast<uint32_t>(value);
  return grpc::Status::OK;
}

constexpr uint64_t kUint32Max = std::numeric_limits<uint32_t>::max();

// Parses `json` (an object) with the uint32 fields of `names`, each with its
// upper bound, into `out`'s members: the two ejection sections share this.
template <typename Section>
grpc::Status ParseSection(
    const nlohmann::json& root, const char* section_name,
    const std::vector<std::tuple<const char*, uint64_t, uint32_t Section::*>>& fields,
    std::optional<Section>* out) {
  auto section = root.find(section_name);
  if (section == root.end()) return grpc::Status::OK;
  if (section->is_null()) return grpc::Status::OK;  // protobuf JSON: null is unset
  if (!section->is_object()) {
    return Invalid(std::string(section_name) + " must be an object, got " + section->dump());
  }
  Section parsed;
  const std::string prefix = std::string(section_name) + ".";
  for (const auto& [name, max, member] : fields) {
    grpc::Status status = ParseUint32(*section, prefix, name, max, &(parsed.*member));
    if (!status.ok()) return status;
  }
  *out = parsed;
  return grpc::Status::OK;
}

grpc::Status ParseChildPolicy(const nlohmann::json& json, OutlierDetectionConfig* config) {
  auto field = json.find("childPolicy");
  const char* example = " (a loadBalancingConfig list such as [{\"round_robin\":{}}])";
  if (field == json.end()) return Invalid(std::string("childPolicy is required") + example);
  if (!field->is_array() || field->empty()) {
    return Invalid(std::string("childPolicy must be a non-empty list") + example + ", got " +
                   field->dump());
  }
  ServiceConfig child;
  grpc::Status status = ParseLoadBalancingConfig(*field, &child);
  if (!status.ok()) {
    // The channel adds "invalid service config: " once, for the whole.
    std::string message = status.error_message();
    const std::string prefix = "invalid service config: ";
    if (message.compare(0, prefix.size(), prefix) == 0) message.erase(0, prefix.size());
    return Invalid("childPolicy: " + message);
  }
  config->child_policy = std::move(child.policy_name);
  config->child_config = std::move(child.config);
  return grpc::Status::OK;
}

grpc::Status ParseOutlierDetectionConfig(const nlohmann::json& json,
                                         std::shared_ptr<const BalancerConfig>* out) {
  auto config = std::make_shared<OutlierDetectionConfig>();
  grpc::Status status = ParseDurationField(json, "interval", &config->interval);
  if (!status.ok()) return status;
  if (config->interval < std::chrono::milliseconds(1)) {
    // Zero would run the sweep back to back on the channel's work serializer,
    // holding one of the control-plane threads every channel shares.
    return Invalid("interval must be at least 1ms, got " + json["interval"].dump());
  }
  status = ParseDurationField(json, "baseEjectionTime", &config->base_ejection_time);
  if (!status.ok()) return status;
  if (json.contains("maxEjectionTime")) {
    status = ParseDurationField(json, "maxEjectionTime", &config->max_ejection_time);
    if (!status.ok()) return status;
  } else {
    config->max_ejection_time =
        std::max<nanoseconds>(std::chrono::seconds(300), config->base_ejection_time);
  }
  status = ParseUint32(json, "", "maxEjectionPercent", 100, &config->max_ejection_percent);
  if (!status.ok()) return status;
  using SR = OutlierDetectionConfig::SuccessRateEjection;
  status = ParseSection<SR>(json, "successRateEjection",
                            {{"stdevFactor", kUint32Max, &SR::stdev_factor},
                             {"enforcementPercentage", 100, &SR::enforcement_percentage},
                             {"minimumHosts", kUint32Max, &SR::minimum_hosts},
                             {"requestVolume", kUint32Max, &SR::request_volume}},
                            &config->success_rate_ejection);
  if (!status.ok()) return status;
  using FP = OutlierDetectionConfig::FailurePercentageEjection;
  status = ParseSection<FP>(json, "failurePercentageEjection",
                            {{"threshold", 100, &FP::threshold},
                             {"enforcementPercentage", 100, &FP::enforcement_percentage},
                             {"minimumHosts", kUint32Max, &FP::minimum_hosts},
                             {"requestVolume", kUint32Max, &FP::request_volume}},
                            &config->failure_percentage_ejection);
  if (!status.ok()) return status;
  status = ParseChildPolicy(json, config.get());
  if (!status.ok()) return status;
  *out = std::move(config);
  return grpc::Status::OK;
}

// ---------------------------------------------------------------------------
// Call counting: the data plane's only write, lock-free.

// A50's call counter: calls end into the active bucket; each interval the
// sweep empties the other one and swaps, and reads the one just retired.
//
// Reference-counted by hand, as least_request's InFlightCounter is: a pick
// takes a reference that its done-callback releases, so the callback captures
// a raw pointer (which std::function keeps inline: no allocation per call)
// and the counter outlives every call picked for its endpoint.
class CallCounter {
 public:
  // A new counter, held by the returned pointer (and its copies).
  static std::shared_ptr<CallCounter> Create() {
    return std::shared_ptr<CallCounter>(new CallCounter(), [](CallCounter* c) { c->Unref(); });
  }

  // Any thread. A pick: EndCall() must follow exactly once.
  void StartCall() { refs_.fetch_add(1, std::memory_order_relaxed); }
  // Any thread: the call's end. `counted` false for a call that never
  // reached the backend. May destroy the counter.
  void EndCall(bool counted, bool success) {
    if (counted) {
      Bucket* bucket = active_.load(std::memory_order_acquire);
      (success ? bucket->successes : bucket->failures).fetch_add(1, std::memory_order_relaxed);
    }
    Unref();
  }
  // Serializer only: starts a new interval and returns the last one's
  // (successes, failures).
  std::pair<uint64_t, uint64_t> Swap() {
    Bucket* retired = active_.load(std::memory_order_relaxed);
    Bucket* next = retired == &buckets_[0] ? &buckets_[1] : &buckets_[0];
    next->successes.store(0, std::memory_order_relaxed);
    next->failures.store(0, std::memory_order_relaxed);
    active_.store(next, std::memory_order_release);
    return {retired->successes.load(std::memory_order_relaxed),
            retired->failures.load(std::memory_order_relaxed)};
  }
  // Serializer only: forgets everything (a new timer start, A50).
  void Reset() {
    for (Bucket& bucket : buckets_) {
      bucket.successes.store(0, std::memory_order_relaxed);
      bucket.failures.store(0, std::memory_order_relaxed);
    }
  }

 private:
  struct Bucket {
    std::atomic<uint64_t> successes{0};
    std::atomic<uint64_t> failures{0};
  };
  CallCounter() = default;
  void Unref() {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

  Bucket buckets_[2];
  std::atomic<Bucket*> active_{&buckets_[0]};
  std::atomic<uint64_t> refs_{1};
};

// A pick lbkit did not use, a call that ended before it was sent (picker.h),
// or one lbkit failed because the picker attached invalid metadata
// (CheckPickMetadata, core/call_info.cc) never reached the backend: not the
// backend's success or failure. CallDoneInfo carries no flag for these, so
// they are told by the exact statuses lbkit gives them.
bool ReachedBackend(const grpc::Status& status) {
  const std::string& message = status.error_message();
  if (status.error_code() == grpc::StatusCode::INTERNAL) {
    static const std::string kInvalidMetadata = "lbkit: picker attached invalid metadata: ";
    return message.compare(0, kInvalidMetadata.size(), kInvalidMetadata) != 0;
  }
  if (status.error_code() != grpc::StatusCode::CANCELLED) return true;
  return message.compare(0, 20, "lbkit: pick not used") != 0 &&
         message != "call ended while queued" && message != "call ended before it was sent";
}

// ---------------------------------------------------------------------------
// The subchannel the child sees.

// What identifies one outlier_detection instance to its wrappers, so that a
// picker recognizes its own (a nested outlier_detection wraps them again).
struct Owner {};

class OdSubchannel final : public ForwardingSubchannel {
 public:
  // `ejected`: created for an endpoint that is ejected already; the child
  // sees TRANSIENT_FAILURE from the start and hears so through
  // NoticeEjected(), which the creator posts.
  OdSubchannel(std::shared_ptr<Subchannel> wrapped, SubchannelStateListener child_listener,
               std::shared_ptr<CallCounter> counter, const Owner* owner, bool ejected)
      : ForwardingSubchannel(std::move(wrapped)),
        counter_(std::move(counter)),
        owner_(owner),
        child_listener_(std::move(child_listener)),
        real_state_(this->wrapped()->state()),
        ejected_(ejected) {}

  // While ejected the child sees TRANSIENT_FAILURE, whatever the connection does.
  ConnectivityState state() const override {
    return ejected_ ? ConnectivityState::kTransientFailure : real_state_;
  }

  // The connection's own state, from the wrapped subchannel's listener.
  void OnRealState(ConnectivityState state, const grpc::Status& status) {
    real_state_ = state;
    real_status_ = status;
    if (!ejected_) Deliver(state, status);
  }
  void Eject() {
    if (ejected_) return;
    ejected_ = true;
    Deliver(ConnectivityState::kTransientFailure, EjectedStatus());
  }
  // The posted notice of a creation while ejected: says nothing if the
  // endpoint was un-ejected in between (Uneject() told the child then).
  void NoticeEjected() {
    if (ejected_) Deliver(ConnectivityState::kTransientFailure, EjectedStatus());
  }
  // Shows the child the connection's latest state again.
  void Uneject() {
    if (!ejected_) return;
    ejected_ = false;
    Deliver(real_state_, real_status_);
  }
  bool ejected() const { return ejected_; }

  // The child is done with it: its listener hears nothing more
  // (Helper::CreateSubchannel's contract), ejections included.
  void Shutdown() override {
    shut_down_ = true;
    child_listener_ = nullptr;
    ForwardingSubchannel::Shutdown();
  }

  // Any thread. Its address's counter, never null; the sweep reads it for
  // whichever endpoint lists the address then (or none).
  CallCounter* counter() const { return counter_.get(); }
  const Owner* owner() const { return owner_; }

 private:
  grpc::Status EjectedStatus() const {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        "outlier_detection: " + address() + " is ejected");
  }
  void Deliver(ConnectivityState state, const grpc::Status& status) {
    if (shut_down_) return;
    SubchannelStateListener listener = child_listener_;  // it may shut us down
    if (listener) listener(state, status);
  }

  const std::shared_ptr<CallCounter> counter_;
  const Owner* const owner_;
  // Serializer only.
  SubchannelStateListener child_listener_;
  ConnectivityState real_state_;
  grpc::Status real_status_;
  bool ejected_;
  bool shut_down_ = false;
};

// ---------------------------------------------------------------------------
// The picker: the child's, with each call's end counted.

class OdPicker final : public Picker {
 public:
  OdPicker(std::shared_ptr<Picker> child, const Owner* owner)
      : child_(std::move(child)), owner_(owner) {}

  PickResult Pick(const PickArgs& args) const override {
    PickResult result = child_->Pick(args);
    if (result.kind() != PickResult::Kind::kComplete || result.subchannel() == nullptr) {
      return result;
    }
    const OdSubchannel* mine = Find(result.subchannel());
    if (mine == nullptr) return result;
    CallCounter* counter = mine->counter();
    counter->StartCall();
    CallDoneCallback& done = result.on_done();
    if (!done) {
      // A raw pointer: std::function keeps it inline, no allocation.
      done = [counter](const CallDoneInfo& info) {
        counter->EndCall(ReachedBackend(info.status()), info.status().ok());
      };
    } else {
      done = [counter, inner = std::move(done)](const CallDoneInfo& info) {
        counter->EndCall(ReachedBackend(info.status()), info.status().ok());
        inner(info);
      };
    }
    return result;
  }

 private:
  // This instance's wrapper, through any wrappers a descendant policy added.
  const OdSubchannel* Find(Subchannel* subchannel) const {
    // The usual case, the child returning our wrapper, costs a type
    // comparison (a pointer compare for this file-local type), not a
    // dynamic_cast.
    if (typeid(*subchannel) == typeid(OdSubchannel)) {
      auto* od = static_cast<OdSubchannel*>(subchannel);
      if (od->owner() == owner_) return od;
    }
    while (subchannel != nullptr) {
      auto* forwarding = dynamic_cast<ForwardingSubchannel*>(subchannel);
      if (forwarding == nullptr) return nullptr;
      auto* od = dynamic_cast<OdSubchannel*>(forwarding);
      if (od != nullptr && od->owner() == owner_) return od;
      subchannel = forwarding->wrapped().get();
    }
    return nullptr;
  }

  const std::shared_ptr<Picker> child_;
  const Owner* const owner_;
};

// ---------------------------------------------------------------------------
// The balancer.

class OutlierDetection final : public Balancer {
 public:
  explicit OutlierDetection(Helper* helper) : helper_(helper), child_helper_(this) {}

  ~OutlierDetection() override {
    child_.reset();  // its subchannels and callbacks go before the rest of us
  }

  grpc::Status UpdateResolverState(BalancerUpdate update) override {
    auto config = std::dynamic_pointer_cast<const OutlierDetectionConfig>(update.config);
    if (config == nullptr) {
      // A parent that passes no config: A50's defaults over round_robin.
      auto defaults = std::make_shared<OutlierDetectionConfig>();
      defaults->child_policy = "round_robin";
      grpc::Status status = FindBalancer("round_robin")
                                ->ParseConfig(nlohmann::json::object(), &defaults->child_config);
      if (!status.ok()) return status;
      config = std::move(defaults);
    }
    const bool was_counting = config_ != nullptr && config_->counting();
    config_ = config;
    UpdateEndpoints(update.endpoints);
    UpdateTimer();

    if (child_ == nullptr || child_name_ != config_->child_policy) {
      grpc::Status status;
      child_ = ChildBalancer::Create(
          &child_helper_, config_->child_policy,
          [this](const BalancerState& state) { OnChildState(state); }, &status);
      child_name_ = config_->child_policy;
      if (child_ == nullptr) {
        Publish(
            {ConnectivityState::kTransientFailure, std::make_shared<FailPicker>(status), status});
        return status;
      }
    }
    grpc::Status status =
        child_->UpdateResolverState({std::move(update.endpoints), config_->child_config});
    // Counting turned on or off: the same child picker, counted or not.
    if (was_counting != config_->counting() && child_ != nullptr) OnChildState(child_->state());
    return status;
  }

  void ResolverError(const grpc::Status& status) override {
    if (child_ != nullptr) {
      child_->ResolverError(status);
      return;
    }
    Publish({ConnectivityState::kTransientFailure, std::make_shared<FailPicker>(status), status});
  }
  void ExitIdle() override {
    if (child_ != nullptr) child_->ExitIdle();
  }
  void ResetBackoff() override {
    if (child_ != nullptr) child_->ResetBackoff();
  }

 private:
  // What OD keeps of one address: the calls of the subchannels the child
  // created for it, and those subchannels. Counted per address, not per
  // endpoint, because a wrapper's address never changes while its endpoint
  // may (an update that moves the address, or changes its endpoint's
  // address set): the sweep adds each address's counts to the endpoint that
  // lists it then, and no counter is ever swapped under the pickers' feet.
  // Kept while an endpoint lists the address or a subchannel for it lives.
  struct AddressState {
    std::shared_ptr<CallCounter> counter = CallCounter::Create();
    std::vector<std::weak_ptr<OdSubchannel>> subchannels;

    // The live wrappers; forgets released ones.
    std::vector<std::shared_ptr<OdSubchannel>> Live() {
      std::vector<std::shared_ptr<OdSubchannel>> live;
      std::vector<std::weak_ptr<OdSubchannel>> kept;
      for (auto& weak : subchannels) {
        if (std::shared_ptr<OdSubchannel> sc = weak.lock()) {
          live.push_back(std::move(sc));
          kept.push_back(std::move(weak));
        }
      }
      subchannels = std::move(kept);
      return live;
    }
  };

  // What OD keeps of one endpoint.
  struct EndpointState {
    std::optional<Clock::time_point> ejected_at;  // set while ejected
    uint32_t multiplier = 0;
    // The addresses it lists (and no endpoint before it does), in its order;
    // set by each update.
    std::vector<std::shared_ptr<AddressState>> addresses;
    // The last interval's counts, during a sweep.
    uint64_t successes = 0;
    uint64_t failures = 0;

    uint64_t volume() const { return successes + failures; }
    template <typename Fn>
    void ForEachSubchannel(Fn&& fn) {
      // Collected first: a callback may create or release subchannels.
      std::vector<std::shared_ptr<OdSubchannel>> live;
      for (auto& address : addresses) {
        for (auto& sc : address->Live()) live.push_back(std::move(sc));
      }
      for (auto& sc : live) fn(*sc);
    }
  };

  // The helper the child gets: everything goes to ours, but the subchannels
  // it creates are wrapped.
  class ChildHelper final : public Helper {
   public:
    explicit ChildHelper(OutlierDetection* od) : od_(od) {}
    std::shared_ptr<Subchannel> CreateSubchannel(const std::string& address,
                                                 SubchannelStateListener listener) override {
      return od_->CreateSubchannel(address, std::move(listener));
    }
    void UpdateState(BalancerState state) override { od_->OnChildState(state); }
    void RequestReresolution() override { od_->helper_->RequestReresolution(); }
    std::unique_ptr<Timer> StartTimer(std::chrono::milliseconds delay,
                                      std::function<void()> fn) override {
      return od_->helper_->StartTimer(delay, std::move(fn));
    }
    void Post(std::function<void()> fn) override { od_->helper_->Post(std::move(fn)); }
    const std::string& target() const override { return od_->helper_->target(); }
    Clock::time_point Now() const override { return od_->helper_->Now(); }

   private:
    OutlierDetection* const od_;
  };

  std::shared_ptr<Subchannel> CreateSubchannel(const std::string& address,
                                               SubchannelStateListener listener) {
    // The wrapper does not exist yet when the connection is created: its
    // listener finds it through this slot.
    auto slot = std::make_shared<std::weak_ptr<OdSubchannel>>();
    std::shared_ptr<Subchannel> real = helper_->CreateSubchannel(
        address, [slot](ConnectivityState state, const grpc::Status& status) {
          if (std::shared_ptr<OdSubchannel> wrapper = slot->lock()) {
            wrapper->OnRealState(state, status);
          }
        });
    // An address no endpoint lists gets an entry too: counted, though for
    // no endpoint, until an update lists it.
    std::shared_ptr<AddressState>& entry = addresses_[address];
    if (entry == nullptr) entry = std::make_shared<AddressState>();
    auto it = by_address_.find(address);
    const bool ejected = it != by_address_.end() && it->second->ejected_at.has_value();
    auto wrapper = std::make_shared<OdSubchannel>(std::move(real), std::move(listener),
                                                  entry->counter, &owner_, ejected);
    *slot = wrapper;
    // Released wrappers are forgotten here too, so that a child that keeps
    // replacing its subchannels does not grow the list.
    auto& list = entry->subchannels;
    list.erase(std::remove_if(list.begin(), list.end(), [](const auto& w) { return w.expired(); }),
               list.end());
    list.push_back(wrapper);
    if (ejected) {
      // Ejected from the start; the child hears so once it has the
      // subchannel, unless something un-ejects it first (a task posted
      // before this one, or the child's own next steps).
      helper_->Post([weak = std::weak_ptr<OdSubchannel>(wrapper)] {
        if (std::shared_ptr<OdSubchannel> sc = weak.lock()) sc->NoticeEjected();
      });
    }
    return wrapper;
  }

  void OnChildState(const BalancerState& state) {
    BalancerState published = state;
    if (config_ != nullptr && config_->counting() && state.picker != nullptr) {
      published.picker = std::make_shared<OdPicker>(state.picker, &owner_);
    }
    Publish(std::move(published));
  }

  void Publish(BalancerState state) { helper_->UpdateState(std::move(state)); }

  // A50: entries for new endpoints, none for removed ones. Then every
  // subchannel shows the ejection of the endpoint that lists its address now,
  // as gRPC C-core re-points its wrappers: a removed endpoint's are
  // un-ejected (and, if the child keeps them, counted for no one); one whose
  // address moved to another endpoint, or whose endpoint changed its address
  // set (so its key), follows that endpoint.
  void UpdateEndpoints(const std::vector<Endpoint>& endpoints) {
    std::unordered_map<std::string, std::shared_ptr<EndpointState>> next;
    std::unordered_map<std::string, std::shared_ptr<EndpointState>> by_address;
    std::unordered_map<std::string, std::shared_ptr<AddressState>> addresses;
    for (const Endpoint& endpoint : endpoints) {
      const std::string key = EndpointKey(endpoint);
      std::shared_ptr<EndpointState>& state = next[key];
      if (state == nullptr) {
        auto old = endpoints_.find(key);
        state = old != endpoints_.end() ? old->second : std::make_shared<EndpointState>();
        state->addresses.clear();
      }
      // An address two endpoints list belongs to the first.
      for (const std::string& address : endpoint.addresses) {
        if (!by_address.emplace(address, state).second) continue;
        auto old = addresses_.find(address);
        auto entry = old != addresses_.end() ? old->second : std::make_shared<AddressState>();
        state->addresses.push_back(entry);
        addresses.emplace(address, std::move(entry));
      }
    }
    // Addresses no longer listed stay while the child holds subchannels for them.
    for (auto& [address, entry] : addresses_) {
      if (addresses.count(address) == 0 && !entry->Live().empty()) {
        addresses.emplace(address, entry);
      }
    }
    endpoints_ = std::move(next);
    by_address_ = std::move(by_address);
    addresses_ = std::move(addresses);

    // Collected first: a callback may create or release subchannels.
    std::vector<std::pair<std::shared_ptr<OdSubchannel>, bool>> changes;
    for (auto& [address, entry] : addresses_) {
      auto owner = by_address_.find(address);
      const bool eject = owner != by_address_.end() && owner->second->ejected_at.has_value();
      for (auto& sc : entry->Live()) {
        if (sc->ejected() != eject) changes.emplace_back(std::move(sc), eject);
      }
    }
    for (auto& [sc, eject] : changes) eject ? sc->Eject() : sc->Uneject();
  }

  // A50's timer start logic: the sweep runs every `interval` from the first
  // config that counts; a new config keeps the schedule (shortened to the new
  // interval); a config with no algorithm stops it and un-ejects everything.
  void UpdateTimer() {
    if (!config_->counting()) {
      timer_.reset();
      timer_start_.reset();
      for (auto& [key, state] : endpoints_) {
        if (state->ejected_at.has_value()) {
          state->ejected_at.reset();
          state->ForEachSubchannel([](OdSubchannel& sc) { sc.Uneject(); });
        }
      }
      return;
    }
    nanoseconds delay = config_->interval;
    if (!timer_start_.has_value()) {
      timer_start_ = helper_->Now();
      for (auto& [address, entry] : addresses_) entry->counter->Reset();
    } else {
      delay = std::max(nanoseconds(0), config_->interval - (helper_->Now() - *timer_start_));
    }
    StartTimer(delay);
  }

  void StartTimer(nanoseconds delay) {
    // Rounded up: a timer never fires before its time.
    auto ms = std::chrono::ceil<std::chrono::milliseconds>(delay);
    timer_ = helper_->StartTimer(ms, [this] { OnTimer(); });
  }

  void OnTimer() {
    const Clock::time_point now = helper_->Now();
    timer_start_ = now;
    for (auto& [key, state] : endpoints_) state->successes = state->failures = 0;
    // Every address's buckets swap, listed or not, so that one listed later
    // starts from its next interval; the counts go to its endpoint.
    for (auto& [address, entry] : addresses_) {
      const auto [successes, failures] = entry->counter->Swap();
      auto owner = by_address_.find(address);
      if (owner == by_address_.end()) continue;
      owner->second->successes += successes;
      owner->second->failures += failures;
    }
    // Counted once, then kept up to date by each ejection.
    size_t ejected = EjectedCount();
    if (config_->success_rate_ejection.has_value()) SuccessRateSweep(now, &ejected);
    if (config_->failure_percentage_ejection.has_value()) FailurePercentageSweep(now, &ejected);
    for (auto& [key, state] : endpoints_) {
      if (!state->ejected_at.has_value()) {
        if (state->multiplier > 0) --state->multiplier;
      } else if (now >= *state->ejected_at + EjectionTime(state->multiplier)) {
        state->ejected_at.reset();
        state->ForEachSubchannel([](OdSubchannel& sc) { sc.Uneject(); });
      }
    }
    StartTimer(config_->interval);
  }

  // min(base * multiplier, max(base, max)), without overflowing.
  nanoseconds EjectionTime(uint32_t multiplier) const {
    const nanoseconds base = config_->base_ejection_time;
    const nanoseconds cap = std::max(base, config_->max_ejection_time);
    if (multiplier != 0 && base.count() > cap.count() / multiplier) return cap;
    return std::min(base * multiplier, cap);
  }

  size_t EjectedCount() const {
    size_t ejected = 0;
    for (const auto& [key, state] : endpoints_) ejected += state->ejected_at.has_value() ? 1 : 0;
    return ejected;
  }

  // maxEjectionPercent: one more may be ejected while fewer than that share
  // of the endpoints is (`ejected` of them); at least one may always be, as in
  // gRPC C-core.
  bool MayEjectMore(size_t ejected) const {
    return ejected == 0 ||
           100 * static_cast<uint64_t>(ejected) <
               static_cast<uint64_t>(config_->max_ejection_percent) * endpoints_.size();
  }

  bool Enforce(uint32_t percentage) {
    return std::uniform_int_distribution<uint32_t>(0, 99)(rng_) < percentage;
  }

  void Eject(EndpointState& state, Clock::time_point now, size_t* ejected) {
    ++*ejected;
    state.ejected_at = now;
    ++state.multiplier;
    state.ForEachSubchannel([](OdSubchannel& sc) { sc.Eject(); });
  }

  // Endpoints in a stable order (by key) for a sweep.
  std::vector<EndpointState*> Candidates() {
    std::vector<std::pair<const std::string*, EndpointState*>> sorted;
    for (auto& [key, state] : endpoints_) sorted.emplace_back(&key, state.get());
    std::sort(sorted.begin(), sorted.end(),
              [](const auto& a, const auto& b) { return *a.first < *b.first; });
    std::vector<EndpointState*> out;
    for (auto& entry : sorted) out.push_back(entry.second);
    return out;
  }

  // The mean and standard deviation are over every endpoint with enough
  // volume, ejected ones included (A50, as gRPC C-core); an ejected one is
  // not ejected again.
  void SuccessRateSweep(Clock::time_point now, size_t* ejected) {
    const auto& sr = *config_->success_rate_ejection;
    std::vector<EndpointState*> enough;
    for (EndpointState* state : Candidates()) {
      if (state->volume() >= sr.request_volume && state->volume() > 0) enough.push_back(state);
    }
    if (enough.size() < sr.minimum_hosts || enough.empty()) return;
    double mean = 0;
    for (EndpointState* state : enough) mean += Rate(*state);
    mean /= enough.size();
    double variance = 0;
    for (EndpointState* state : enough) variance += (Rate(*state) - mean) * (Rate(*state) - mean);
    variance /= enough.size();
    const double threshold = mean - std::sqrt(variance) * (sr.stdev_factor / 1000.0);
    for (EndpointState* state : enough) {
      if (!MayEjectMore(*ejected)) return;
      if (!state->ejected_at.has_value() && Rate(*state) < threshold &&
          Enforce(sr.enforcement_percentage)) {
        Eject(*state, now, ejected);
      }
    }
  }

  void FailurePercentageSweep(Clock::time_point now, size_t* ejected) {
    const auto& fp = *config_->failure_percentage_ejection;
    if (endpoints_.size() < fp.minimum_hosts) return;
    for (EndpointState* state : Candidates()) {
      if (!MayEjectMore(*ejected)) return;
      if (state->ejected_at.has_value() || state->volume() == 0 ||
          state->volume() < fp.request_volume) {
        continue;
      }
      const double failed = 100.0 * state->failures / state->volume();
      if (failed > fp.threshold && Enforce(fp.enforcement_percentage)) {
        Eject(*state, now, ejected);
      }
    }
  }

  static double Rate(const EndpointState& state) {
    return static_cast<double>(state.successes) / state.volume();
  }

  Helper* const helper_;
  ChildHelper child_helper_;
  Owner owner_;
  std::shared_ptr<const OutlierDetectionConfig> config_;
  std::unordered_map<std::string, std::shared_ptr<EndpointState>> endpoints_;  // by EndpointKey
  std::unordered_map<std::string, std::shared_ptr<EndpointState>> by_address_;
  // Listed addresses, and others the child holds subchannels for.
  std::unordered_map<std::string, std::shared_ptr<AddressState>> addresses_;
  std::optional<Clock::time_point> timer_start_;
  std::unique_ptr<Timer> timer_;
  std::mt19937_64 rng_{std::random_device{}()};
  std::string child_name_;
  std::unique_ptr<ChildBalancer> child_;  // last: destroyed first
};

class OutlierDetectionBuilder final : public BalancerBuilder {
 public:
  std::string name() const override { return "outlier_detection"; }
  grpc::Status ParseConfig(const nlohmann::json& json,
                           std::shared_ptr<const BalancerConfig>* config) const override {
    return ParseOutlierDetectionConfig(json, config);
  }
  std::unique_ptr<Balancer> Build(Helper* helper) const override {
    return std::make_unique<OutlierDetection>(helper);
  }
};

}  // namespace

std::shared_ptr<const BalancerBuilder> MakeOutlierDetectionBuilder() {
  return std::make_shared<OutlierDetectionBuilder>();
}

}  // namespace internal
}  // namespace lbkit
