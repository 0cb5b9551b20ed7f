#include "common/test_policy.h"

#include <memory>
#include <utility>

#include "lbkit/registry.h"

namespace lbkit_test {
namespace {

class WrappedPicker final : public lbkit::Picker {
 public:
  WrappedPicker(std::shared_ptr<lbkit::Picker> inner, std::shared_ptr<const PickWrapper> wrap)
      : inner_(std::move(inner)), wrap_(std::move(wrap)) {}
  lbkit::PickResult Pick(const lbkit::PickArgs& args) const override {
    return (*wrap_)(args, inner_->Pick(args));
  }

 private:
  std::shared_ptr<lbkit::Picker> inner_;
  std::shared_ptr<const PickWrapper> wrap_;
};

class WrappedBalancer final : public lbkit::Balancer {
 public:
  WrappedBalancer(lbkit::Helper* helper, std::shared_ptr<const PickWrapper> wrap)
      : helper_(helper), wrap_(std::move(wrap)) {
    grpc::Status status;
    child_ = lbkit::ChildBalancer::Create(
        helper, "pick_first",
        [this](const lbkit::BalancerState& state) {
          lbkit::BalancerState wrapped = state;
          wrapped.picker = std::make_shared<WrappedPicker>(state.picker, wrap_);
          helper_->UpdateState(std::move(wrapped));
        },
        &status);
  }
  grpc::Status UpdateResolverState(lbkit::BalancerUpdate update) override {
    update.config = nullptr;
    return child_->UpdateResolverState(std::move(update));
  }
  void ResolverError(const grpc::Status& status) override { child_->ResolverError(status); }

 private:
  lbkit::Helper* helper_;
  std::shared_ptr<const PickWrapper> wrap_;
  std::unique_ptr<lbkit::ChildBalancer> child_;
};

class WrappedBuilder final : public lbkit::BalancerBuilder {
 public:
  WrappedBuilder(std::string name, PickWrapper wrap)
      : name_(std::move(name)), wrap_(std::make_shared<const PickWrapper>(std::move(wrap))) {}
  std::string name() const override { return name_; }
  grpc::Status ParseConfig(const nlohmann::json&,
                           std::shared_ptr<const lbkit::BalancerConfig>* config) const override {
    *config = std::make_shared<lbkit::BalancerConfig>();
    return grpc::Status::OK;
  }
  std::unique_ptr<lbkit::Balancer> Build(lbkit::Helper* helper) const override {
    return std::make_unique<WrappedBalancer>(helper, wrap_);
  }

 private:
  std::string name_;
  std::shared_ptr<const PickWrapper> wrap_;
};

}  // namespace

grpc::Status RegisterWrappedPickFirst(const std::string& name, PickWrapper wrap) {
  return lbkit::RegisterBalancer(std::make_shared<WrappedBuilder>(name, std::move(wrap)),
                                 lbkit::OnDuplicate::kReplace);
}

}  // namespace lbkit_test
