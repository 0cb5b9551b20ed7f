// custom_round_robin, the seed example's policy, written against lbkit's
// public headers only: one pick_first child per endpoint (EndpointSharding);
// once two children are READY, every chooseSecond-th call goes to the second
// one and the rest to the first. Until then it reports CONNECTING (calls
// wait), or TRANSIENT_FAILURE when its children cannot connect.
//
// Config: {"chooseSecond": N}, N a whole number >= 0 (default 3; 0 means never
// the second).
#ifndef LBKIT_EXAMPLES_CUSTOM_ROUND_ROBIN_H_
#define LBKIT_EXAMPLES_CUSTOM_ROUND_ROBIN_H_

#include <atomic>
#include <cstdint>
#include <memory>

#include <lbkit/lbkit.h>

namespace customlb {

class CustomRoundRobinConfig final : public lbkit::BalancerConfig {
 public:
  uint32_t choose_second = 3;
};

// Call n (counting from 1) goes to `second` when chooseSecond divides n, else
// to `first`.
class CustomRoundRobinPicker final : public lbkit::Picker {
 public:
  CustomRoundRobinPicker(std::shared_ptr<lbkit::Picker> first,
                         std::shared_ptr<lbkit::Picker> second, uint32_t choose_second)
      : first_(std::move(first)), second_(std::move(second)), choose_second_(choose_second) {}

  lbkit::PickResult Pick(const lbkit::PickArgs& args) const override {
    uint64_t n = next_.fetch_add(1, std::memory_order_relaxed) + 1;
    if (choose_second_ != 0 && n % choose_second_ == 0) return second_->Pick(args);
    return first_->Pick(args);
  }

 private:
  const std::shared_ptr<lbkit::Picker> first_;
  const std::shared_ptr<lbkit::Picker> second_;
  const uint32_t choose_second_;
  alignas(64) mutable std::atomic<uint64_t> next_{0};
};

class CustomRoundRobinBuilder final : public lbkit::BalancerBuilder {
 public:
  std::string name() const override { return "custom_round_robin"; }
  grpc::Status ParseConfig(const nlohmann::json& json,
                           std::shared_ptr<const lbkit::BalancerConfig>* config) const override;
  std::unique_ptr<lbkit::Balancer> Build(lbkit::Helper* helper) const override;
};

// Registers custom_round_robin. Idempotent: the first call registers and
// every call returns its status (ALREADY_EXISTS if some other code took the
// name "custom_round_robin" first).
[[nodiscard]] grpc::Status RegisterCustomRoundRobin();

}  // namespace customlb

#endif  // LBKIT_EXAMPLES_CUSTOM_ROUND_ROBIN_H_
