#include "policies/ring_hash.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <limits>
#include <mutex>
#include <random>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

// Header-only xxHash (Debian's libxxhash-dev): the hash is inlined into the
// picker, and lbkit's users link no extra library.
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "lbkit/endpoint_sharding.h"
#include "lbkit/registry.h"

namespace lbkit {
namespace internal {
namespace {

constexpr char kName[] = "ring_hash";
// 8M ring entries take 128 MiB here.
constexpr uint64_t kRingSizeCap = kRingHashSizeCap;

uint64_t Hash(std::string_view text) { return XXH64(text.data(), text.size(), 0); }

// A hash for a call without a key: splitmix64 over a per-thread counter, so
// that a pick neither locks nor allocates.
uint64_t RandomHash() {
  thread_local uint64_t state = 0;
  if (state == 0) state = (static_cast<uint64_t>(std::random_device{}()) << 32) | 1;
  uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

struct RingEntry {
  uint64_t hash;
  uint32_t endpoint;  // index into the balancer's endpoint list
};
using Ring = std::vector<RingEntry>;

// A42's ring: each endpoint gets entries in proportion to its normalized
// weight; the ring has at least min_ring_size entries, scaled up so that the
// lightest endpoint gets a whole number of them (at least one), and at most
// max_ring_size. Entry n of an endpoint
// hashes "<key>_<n>", the key being its hash_key attribute or else its first
// address.
std::shared_ptr<const Ring> BuildRing(const std::vector<const Endpoint*>& endpoints,
                                      const RingHashConfig& config) {
  auto ring = std::make_shared<Ring>();
  if (endpoints.empty()) return ring;
  double total = 0;
  uint32_t lightest = std::numeric_limits<uint32_t>::max();
  for (const Endpoint* endpoint : endpoints) {
    total += endpoint->attributes.weight;
    lightest = std::min(lightest, endpoint->attributes.weight);
  }
  const double min_normalized = lightest / total;
  const double scale = std::min(
      std::ceil(min_normalized * static_cast<double>(config.min_ring_size)) / min_normalized,
      static_cast<double>(config.max_ring_size));
  ring->reserve(static_cast<size_t>(std::ceil(scale)) + endpoints.size());
  double current = 0;
  double target = 0;
  std::string text;
  for (size_t i = 0; i < endpoints.size(); ++i) {
    const Endpoint& endpoint = *endpoints[i];
    text = !endpoint.attributes.hash_key.empty() ? endpoint.attributes.hash_key
           : endpoint.addresses.empty()          ? std::string()
                                                 : endpoint.addresses.front();
    text += '_';
    const size_t prefix = text.size();
    target += scale * endpoint.attributes.weight / total;
    // The tolerance keeps rounding noise in `target` from giving one
    // endpoint an extra entry (and the next one fewer), which would make an
    // endpoint's entries depend on its position in the list.
    for (uint64_t n = 0; current + 1e-6 < target; ++n, current += 1) {
      text.resize(prefix);
      text += std::to_string(n);
      ring->push_back({Hash(text), static_cast<uint32_t>(i)});
    }
  }
  std::sort(ring->begin(), ring->end(), [](const RingEntry& a, const RingEntry& b) {
    return a.hash != b.hash ? a.hash < b.hash : a.endpoint < b.endpoint;
  });
  return ring;
}

class RingHash;

// How a picker asks the balancer to connect an endpoint: a Helper::Post to
// the serializer. The picker may outlive the balancer, so the balancer
// disarms this when it goes. Only picks that land on an IDLE endpoint come
// here, once per endpoint per picker.
class Connector {
 public:
  explicit Connector(Helper* helper, RingHash* balancer) : helper_(helper), balancer_(balancer) {}
  void Request(uint64_t generation, uint32_t endpoint);
  void Disarm() {
    std::lock_guard<std::mutex> lock(mu_);
    balancer_ = nullptr;
  }

 private:
  std::mutex mu_;
  Helper* const helper_;
  RingHash* balancer_;
};

class RingHashPicker final : public Picker {
 public:
  struct EndpointView {
    ConnectivityState state;
    std::shared_ptr<Picker> picker;  // the child's; null while it has none
  };

  RingHashPicker(std::shared_ptr<const Ring> ring, std::vector<EndpointView> endpoints,
                 std::string header, std::shared_ptr<Connector> connector, uint64_t generation,
                 grpc::Status failure)
      : ring_(std::move(ring)),
        endpoints_(std::move(endpoints)),
        header_(std::move(header)),
        connector_(std::move(connector)),
        generation_(generation),
        failure_(std::move(failure)),
        requested_(new std::atomic<bool>[endpoints_.size()]) {
    for (size_t i = 0; i < endpoints_.size(); ++i) {
      requested_[i].store(false, std::memory_order_relaxed);
      if (endpoints_[i].state == ConnectivityState::kReady) ++ready_;
    }
  }

  PickResult Pick(const PickArgs& args) const override {
    uint64_t hash;
    auto header = header_.empty() ? args.metadata->end() : args.metadata->find(header_);
    hash = header != args.metadata->end() ? Hash(header->second) : RandomHash();
    const Ring& ring = *ring_;
    size_t first = LowerBound(ring, hash);
    if (first == ring.size()) first = 0;
    uint32_t chosen = ring[first].endpoint;
    const EndpointView& view = endpoints_[chosen];
    switch (view.state) {
      case ConnectivityState::kReady:
        return view.picker->Pick(args);
      case ConnectivityState::kIdle:
        Connect(chosen);
        return PickResult::Queue();
      case ConnectivityState::kConnecting:
        return PickResult::Queue();
      default:
        break;
    }
    // TRANSIENT_FAILURE: walk on to the next endpoints. The first READY one
    // takes the call; the first IDLE one is asked to connect; the call waits
    // if some endpoint may still connect and fails only if none can.
    bool pending = false;
    bool connecting_one = false;
    uint32_t previous = chosen;
    for (size_t i = 1; i < ring.size(); ++i) {
      const uint32_t index = ring[(first + i) % ring.size()].endpoint;
      if (index == previous || index == chosen) continue;
      previous = index;
      const EndpointView& next = endpoints_[index];
      if (next.state == ConnectivityState::kReady) return next.picker->Pick(args);
      if (next.state == ConnectivityState::kIdle && !connecting_one) {
        Connect(index);
        connecting_one = true;
      }
      if (next.state == ConnectivityState::kIdle || next.state == ConnectivityState::kConnecting) {
        pending = true;
        if (ready_ == 0) break;  // nothing READY further on: wait for this one
      }
    }
    if (pending) return PickResult::Queue();
    return PickResult::Fail(failure_);
  }

 private:
  // The first entry whose hash is >= `hash` (ring.size() if none), without
  // branches on the data: a random hash makes every branch of std::lower_bound
  // a coin toss, and the mispredictions cost more than the search.
  static size_t LowerBound(const Ring& ring, uint64_t hash) {
    const RingEntry* base = ring.data();
    size_t length = ring.size();
    while (length > 1) {
      const size_t half = length / 2;
      base = base[half].hash < hash ? base + half : base;
      length -= half;
    }
    return static_cast<size_t>(base - ring.data()) + (base->hash < hash ? 1 : 0);
  }

  void Connect(uint32_t endpoint) const {
    if (!requested_[endpoint].exchange(true, std::memory_order_relaxed)) {
      connector_->Request(generation_, endpoint);
    }
  }

  const std::shared_ptr<const Ring> ring_;  // never empty
  const std::vector<EndpointView> endpoints_;
  const std::string header_;
  const std::shared_ptr<Connector> connector_;
  const uint64_t generation_;
  const grpc::Status failure_;  // when every endpoint is in TRANSIENT_FAILURE
  size_t ready_ = 0;
  // requested_[i]: this picker already asked for endpoint i's connection.
  std::unique_ptr<std::atomic<bool>[]> requested_;
};

class RingHash final : public Balancer {
 public:
  explicit RingHash(Helper* helper)
      : helper_(helper), connector_(std::make_shared<Connector>(helper, this)) {}
  ~RingHash() override {
    connector_->Disarm();
    ++suppress_;  // children going away report nothing upward
    for (Entry& entry : endpoints_) *entry.slot = static_cast<size_t>(-1);
    endpoints_.clear();
  }

  grpc::Status UpdateResolverState(BalancerUpdate update) override {
    config_ = std::dynamic_pointer_cast<const RingHashConfig>(update.config);
    if (config_ == nullptr) config_ = std::make_shared<RingHashConfig>();
    if (child_config_ == nullptr) {
      grpc::Status status =
          FindBalancer("pick_first")->ParseConfig(nlohmann::json::object(), &child_config_);
      if (!status.ok()) return status;
    }
    ++generation_;
    resolver_error_ = grpc::Status::OK;

    // Endpoints that stay keep their child (and its connection); the same
    // endpoint listed twice is one.
    std::unordered_map<std::string, size_t> old_index;
    old_index.reserve(endpoints_.size());
    for (size_t i = 0; i < endpoints_.size(); ++i) old_index.emplace(endpoints_[i].key, i);
    std::vector<Entry> next;
    next.reserve(update.endpoints.size());
    std::unordered_map<std::string, bool> listed;
    std::vector<size_t> changed;
    for (Endpoint& endpoint : update.endpoints) {
      std::string key = EndpointKey(endpoint);
      if (!listed.emplace(key, true).second) continue;
      auto it = old_index.find(key);
      if (it != old_index.end()) {
        Entry& old = endpoints_[it->second];
        if (old.child != nullptr && old.endpoint != endpoint) changed.push_back(next.size());
        old.endpoint = std::move(endpoint);
        next.push_back(std::move(old));
      } else {
        Entry entry;
        entry.endpoint = std::move(endpoint);
        entry.key = std::move(key);
        entry.slot = std::make_shared<size_t>(0);
        next.push_back(std::move(entry));
      }
      *next.back().slot = next.size() - 1;
    }
    // What remains of removed endpoints: their children must not report into
    // the new list.
    for (Entry& entry : endpoints_) {
      if (entry.slot != nullptr) *entry.slot = static_cast<size_t>(-1);
    }
    ++suppress_;
    endpoints_.swap(next);
    next.clear();  // removed endpoints' children go here
    std::vector<const Endpoint*> views;
    views.reserve(endpoints_.size());
    for (const Entry& entry : endpoints_) views.push_back(&entry.endpoint);
    ring_ = BuildRing(views, *config_);
    for (size_t index : changed) {
      BalancerUpdate child_update;
      child_update.endpoints = {endpoints_[index].endpoint};
      child_update.config = child_config_;
      endpoints_[index].child->UpdateResolverState(std::move(child_update));
    }
    --suppress_;
    Publish();
    if (endpoints_.empty()) return NoEndpoints();
    return grpc::Status::OK;
  }

  void ResolverError(const grpc::Status& status) override {
    for (Entry& entry : endpoints_) {
      if (entry.child != nullptr) entry.child->ResolverError(status);
    }
    if (endpoints_.empty()) {
      resolver_error_ =
          status.ok() ? grpc::Status(grpc::StatusCode::UNAVAILABLE, "unknown") : status;
      Publish();
    }
  }

  // Leaves IDLE by connecting one endpoint, unless one is already connected
  // or connecting: the rest connect when calls land on them.
  void ExitIdle() override {
    for (const Entry& entry : endpoints_) {
      if (entry.state.state == ConnectivityState::kReady ||
          entry.state.state == ConnectivityState::kConnecting) {
        return;
      }
    }
    for (size_t i = 0; i < endpoints_.size(); ++i) {
      if (endpoints_[i].state.state == ConnectivityState::kIdle) {
        RequestConnection(i);
        return;
      }
    }
  }

  void ResetBackoff() override {
    for (Entry& entry : endpoints_) {
      if (entry.child != nullptr) entry.child->ResetBackoff();
    }
  }

  // From a picker, through Connector: on the serializer.
  void OnConnectRequest(uint64_t generation, uint32_t endpoint) {
    if (generation != generation_ || endpoint >= endpoints_.size()) return;  // a newer picker asks
    if (endpoints_[endpoint].state.state == ConnectivityState::kIdle) RequestConnection(endpoint);
  }

 private:
  struct Entry {
    Endpoint endpoint;
    std::string key;                       // EndpointKey(endpoint)
    std::unique_ptr<ChildBalancer> child;  // pick_first, built on the first connection request
    BalancerState state;                   // IDLE until the child says otherwise
    std::shared_ptr<size_t> slot;          // this entry's index, for the child's callback
  };

  void RequestConnection(size_t index) {
    Entry& entry = endpoints_[index];
    ++suppress_;
    if (entry.child == nullptr) {
      grpc::Status status;
      entry.child = ChildBalancer::Create(
          helper_, "pick_first",
          [this, slot = entry.slot](const BalancerState& state) { OnChildState(*slot, state); },
          &status);
      if (entry.child == nullptr) {
        entry.state.state = ConnectivityState::kTransientFailure;
        entry.state.status = status;
        last_error_ = status;
      } else {
        entry.state = entry.child->state();
        BalancerUpdate update;
        update.endpoints = {entry.endpoint};
        update.config = child_config_;
        // pick_first connects on its first update.
        entry.child->UpdateResolverState(std::move(update));
      }
    } else {
      entry.child->ExitIdle();
    }
    --suppress_;
    Publish();
  }

  void OnChildState(size_t index, const BalancerState& state) {
    if (index >= endpoints_.size()) return;
    Entry& entry = endpoints_[index];
    entry.state = state;
    if (state.state == ConnectivityState::kTransientFailure && !state.status.ok()) {
      last_error_ = state.status;
    }
    // A child that falls back to IDLE (its connection closed) stays IDLE
    // until a call lands on it: connections are made on demand.
    Publish();
  }

  grpc::Status NoEndpoints() const {
    if (!resolver_error_.ok()) {
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, std::string(kName) + ": resolver error: " +
                                                             resolver_error_.error_message());
    }
    return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        std::string(kName) + ": the resolver returned no endpoints");
  }

  // Publishes the aggregate state. Re-entrant calls (a child reporting while
  // this connects another) are folded into one more round.
  void Publish() {
    if (suppress_ > 0) return;
    if (publishing_) {
      again_ = true;
      return;
    }
    publishing_ = true;
    proactive_tried_ = false;
    do {
      again_ = false;
      PublishOnce();
    } while (again_);
    publishing_ = false;
  }

  void PublishOnce() {
    BalancerState update;
    if (endpoints_.empty()) {
      update.state = ConnectivityState::kTransientFailure;
      update.status = NoEndpoints();
      update.picker = std::make_shared<FailPicker>(update.status);
      helper_->UpdateState(std::move(update));
      return;
    }
    size_t ready = 0;
    size_t connecting = 0;
    size_t idle = 0;
    size_t failed = 0;
    std::vector<RingHashPicker::EndpointView> views;
    views.reserve(endpoints_.size());
    for (const Entry& entry : endpoints_) {
      switch (entry.state.state) {
        case ConnectivityState::kReady:
          ++ready;
          break;
        case ConnectivityState::kConnecting:
          ++connecting;
          break;
        case ConnectivityState::kIdle:
          ++idle;
          break;
        default:
          ++failed;
          break;
      }
      views.push_back({entry.state.state, entry.state.picker});
    }
    // A42's aggregation.
    if (ready > 0) {
      update.state = ConnectivityState::kReady;
    } else if (failed >= 2) {
      update.state = ConnectivityState::kTransientFailure;
    } else if (connecting > 0) {
      update.state = ConnectivityState::kConnecting;
    } else if (failed == 1 && endpoints_.size() > 1) {
      update.state = ConnectivityState::kConnecting;
    } else if (idle > 0) {
      update.state = ConnectivityState::kIdle;
    } else {
      update.state = ConnectivityState::kTransientFailure;
    }
    grpc::Status failure(
        grpc::StatusCode::UNAVAILABLE,
        std::string(kName) + ": " + std::to_string(failed) + " of " +
            std::to_string(endpoints_.size()) + " endpoints in TRANSIENT_FAILURE" +
            (last_error_.error_message().empty() ? std::string()
                                                 : "; last error: " + last_error_.error_message()));
    if (update.state == ConnectivityState::kTransientFailure) update.status = failure;
    update.picker =
        std::make_shared<RingHashPicker>(ring_, std::move(views), config_->request_hash_header,
                                         connector_, generation_, std::move(failure));
    helper_->UpdateState(std::move(update));
    // A42: while failing, keep one endpoint trying, so that the policy
    // recovers without waiting for a call to land on a working endpoint.
    // Once per Publish: a child that stays IDLE when asked must not loop here.
    if (failed > 0 && ready == 0 && connecting == 0 && idle > 0 && !proactive_tried_) {
      proactive_tried_ = true;
      for (size_t i = 0; i < endpoints_.size(); ++i) {
        if (endpoints_[i].state.state == ConnectivityState::kIdle) {
          RequestConnection(i);  // re-enters Publish: one more round
          return;
        }
      }
    }
  }

  Helper* const helper_;
  const std::shared_ptr<Connector> connector_;
  std::shared_ptr<const RingHashConfig> config_ = std::make_shared<RingHashConfig>();
  std::shared_ptr<const BalancerConfig> child_config_;  // pick_first's default
  std::vector<Entry> endpoints_;
  std::shared_ptr<const Ring> ring_ = std::make_shared<Ring>();
  uint64_t generation_ = 0;  // of the endpoint list: a picker's requests name it
  grpc::Status last_error_;
  grpc::Status resolver_error_;
  int suppress_ = 0;
  bool publishing_ = false;
  bool again_ = false;
  bool proactive_tried_ = false;
};

void Connector::Request(uint64_t generation, uint32_t endpoint) {
  std::lock_guard<std::mutex> lock(mu_);
  if (balancer_ == nullptr) return;
  helper_->Post([balancer = balancer_, generation, endpoint] {
    // Posts of a destroyed balancer are dropped by its helper.
    balancer->OnConnectRequest(generation, endpoint);
  });
}

// Reads a ring size: a whole number from 1 up; above 8M it is capped at 8M.
grpc::Status ParseRingSize(const nlohmann::json& json, const char* name, uint64_t* value) {
  auto field = json.find(name);
  if (field == json.end()) return grpc::Status::OK;
  auto bad = [&] {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        std::string(name) + " must be a whole number from 1 to " +
                            std::to_string(kRingSizeCap) + " (larger ones are capped), got " +
                            field->dump());
  };
  uint64_t parsed;
  if (field->is_number_unsigned()) {
    parsed = field->get<uint64_t>();
  } else if (field->is_number_float()) {
    double number = field->get<double>();
    if (!(number >= 1) || std::floor(number) != number) return bad();
    parsed = number >= 1e18 ? kRingSizeCap : static_cast<uint64_t>(number);
  } else {
    return bad();  // negative integers, strings, booleans, null, objects
  }
  if (parsed == 0) return bad();
  *value = std::min(parsed, kRingSizeCap);
  return grpc::Status::OK;
}

class RingHashBuilder final : public BalancerBuilder {
 public:
  std::string name() const override { return kName; }
  grpc::Status ParseConfig(const nlohmann::json& json,
                           std::shared_ptr<const BalancerConfig>* config) const override {
    auto parsed = std::make_shared<RingHashConfig>();
    grpc::Status status = ParseRingSize(json, "minRingSize", &parsed->min_ring_size);
    if (!status.ok()) return status;
    status = ParseRingSize(json, "maxRingSize", &parsed->max_ring_size);
    if (!status.ok()) return status;
    if (parsed->min_ring_size > parsed->max_ring_size) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "minRingSize (" + std::to_string(parsed->min_ring_size) +
                              ") must not exceed maxRingSize (" +
                              std::to_string(parsed->max_ring_size) + ")");
    }
    auto header = json.find("requestHashHeader");
    if (header != json.end()) {
      if (!header->is_string()) {
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                            "requestHashHeader must be a string, got " + header->dump());
      }
      std::string key = header->get<std::string>();
      std::transform(key.begin(), key.end(), key.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      if (key.size() >= 4 && key.compare(key.size() - 4, 4, "-bin") == 0) {
        return grpc::Status(
            grpc::StatusCode::INVALID_ARGUMENT,
            "requestHashHeader must not be a binary (-bin) header, got " + header->dump());
      }
      parsed->request_hash_header = std::move(key);
    }
    *config = std::move(parsed);
    return grpc::Status::OK;
  }
  std::unique_ptr<Balancer> Build(Helper* helper) const override {
    return std::make_unique<RingHash>(helper);
  }
};

}  // namespace

std::shared_ptr<const BalancerBuilder> MakeRingHashBuilder() {
  return std::make_shared<RingHashBuilder>();
}

}  // namespace internal
}  // namespace lbkit
