#include "load_aware.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <random>
#include <string>
#include <utility>
#include <vector>

namespace load_aware {
namespace {

// What the backends of one endpoint last reported. Shared by the pickers
// (which read it) and the done-callbacks of calls in flight (which write it,
// from any thread): hence an atomic.
struct EndpointLoad {
  std::atomic<double> utilization{0};
};

double Utilization(const lbkit::LoadReport& report, const LoadAwareConfig& config) {
  switch (config.metric) {
    case LoadAwareConfig::Metric::kCpu:
      return report.cpu_utilization;
    case LoadAwareConfig::Metric::kApplication:
      return report.application_utilization;
    case LoadAwareConfig::Metric::kNamed: {
      auto it = report.named_metrics.find(config.named_metric);
      return it == report.named_metrics.end() ? 0 : it->second;
    }
  }
  return 0;
}

class LoadAwarePicker final : public lbkit::Picker {
 public:
  struct Entry {
    std::shared_ptr<lbkit::Picker> child;  // the endpoint's pick_first picker
    uint32_t weight;
    std::shared_ptr<EndpointLoad> load;
  };

  LoadAwarePicker(std::vector<Entry> entries, std::shared_ptr<const LoadAwareConfig> config)
      : entries_(std::move(entries)), config_(std::move(config)) {}

  lbkit::PickResult Pick(const lbkit::PickArgs& args) const override {
    // Two passes over the live weights, no lock: pickers run on every call,
    // from many threads at once.
    double total = 0;
    for (const Entry& entry : entries_) total += Effective(entry);
    thread_local std::mt19937_64 rng{std::random_device{}()};
    double left = std::uniform_real_distribution<double>(0, total)(rng);
    const Entry* chosen = &entries_.back();  // if a report lowered a weight meanwhile
    for (const Entry& entry : entries_) {
      left -= Effective(entry);
      if (left < 0) {
        chosen = &entry;
        break;
      }
    }
    lbkit::PickResult result = chosen->child->Pick(args);
    if (result.kind() != lbkit::PickResult::Kind::kComplete) return result;
    // Learn from the call's end: the backend's load report, if it sent one.
    // The child's own callback, if any, still runs.
    result.on_done() = [load = chosen->load, config = config_,
                        inner = std::move(result.on_done())](const lbkit::CallDoneInfo& info) {
      if (const lbkit::LoadReport* report = info.load_report()) {
        load->utilization.store(Utilization(*report, *config), std::memory_order_relaxed);
      }
      if (inner) inner(info);
    };
    result.AddMetadata("x-load-aware-weight", std::to_string(chosen->weight));
    return result;
  }

 private:
  static double Effective(const Entry& entry) {
    double utilization = entry.load->utilization.load(std::memory_order_relaxed);
    if (!std::isfinite(utilization)) utilization = 0;  // a NaN report must not poison the sum
    return entry.weight * (1.0 - std::clamp(utilization, 0.0, 0.95));
  }

  const std::vector<Entry> entries_;  // never empty
  const std::shared_ptr<const LoadAwareConfig> config_;
};

class LoadAware final : public lbkit::Balancer {
 public:
  explicit LoadAware(lbkit::Helper* helper)
      : children_(helper,
                  lbkit::EndpointSharding::ReadyPicker{
                      "load_aware", /*min_ready=*/1,
                      [this](const std::vector<const lbkit::EndpointSharding::Child*>& ready) {
                        return BuildPicker(ready);
                      }}) {}

  grpc::Status UpdateResolverState(lbkit::BalancerUpdate update) override {
    config_ = std::static_pointer_cast<const LoadAwareConfig>(update.config);
    if (config_ == nullptr) config_ = std::make_shared<LoadAwareConfig>();
    loads_.RetainOnly(update.endpoints);  // what removed endpoints reported goes
    return children_.Update(update.endpoints);
  }
  void ResolverError(const grpc::Status& status) override { children_.ResolverError(status); }
  void ExitIdle() override { children_.ExitIdle(); }
  void ResetBackoff() override { children_.ResetBackoff(); }

 private:
  // Only this: EndpointSharding publishes CONNECTING and TRANSIENT_FAILURE.
  std::shared_ptr<lbkit::Picker> BuildPicker(
      const std::vector<const lbkit::EndpointSharding::Child*>& ready) {
    std::vector<LoadAwarePicker::Entry> entries;
    entries.reserve(ready.size());
    for (const lbkit::EndpointSharding::Child* child : ready) {
      std::shared_ptr<EndpointLoad>& load = loads_[child->endpoint];
      if (load == nullptr) load = std::make_shared<EndpointLoad>();
      entries.push_back({child->state.picker, child->endpoint.attributes.weight, load});
    }
    return std::make_shared<LoadAwarePicker>(std::move(entries), config_);
  }

  lbkit::EndpointSharding children_;
  std::shared_ptr<const LoadAwareConfig> config_ = std::make_shared<LoadAwareConfig>();
  lbkit::EndpointMap<std::shared_ptr<EndpointLoad>> loads_;
};

}  // namespace

grpc::Status LoadAwareBuilder::ParseConfig(
    const nlohmann::json& json, std::shared_ptr<const lbkit::BalancerConfig>* config) const {
  auto parsed = std::make_shared<LoadAwareConfig>();
  auto metric = json.find("metric");
  if (metric != json.end()) {
    const std::string value = metric->is_string() ? metric->get<std::string>() : "";
    if (value == "cpu") {
      parsed->metric = LoadAwareConfig::Metric::kCpu;
    } else if (value == "application") {
      parsed->metric = LoadAwareConfig::Metric::kApplication;
    } else if (value.rfind("named:", 0) == 0 && value.size() > 6) {
      parsed->metric = LoadAwareConfig::Metric::kNamed;
      parsed->named_metric = value.substr(6);
    } else {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "metric must be \"cpu\", \"application\" or \"named:<name>\"");
    }
  }
  *config = std::move(parsed);
  return grpc::Status::OK;
}

std::unique_ptr<lbkit::Balancer> LoadAwareBuilder::Build(lbkit::Helper* helper) const {
  return std::make_unique<LoadAware>(helper);
}

grpc::Status RegisterLoadAware() {
  return lbkit::RegisterBalancer(std::make_shared<LoadAwareBuilder>());
}

}  // namespace load_aware
