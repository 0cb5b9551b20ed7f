#include "resolvers/manual.h"

#include <utility>

namespace lbkit {

std::shared_ptr<ManualResolver> ManualResolver::Create() {
  return std::shared_ptr<ManualResolver>(new ManualResolver());
}

void ManualResolver::SetInitialState(ResolverState state) { UpdateState(std::move(state)); }

void ManualResolver::UpdateState(ResolverState state) {
  std::shared_ptr<ResolverListener> listener;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (listener_ == nullptr) {
      initial_state_ = std::move(state);
      has_initial_state_ = true;
      return;
    }
    listener = listener_;
  }
  listener->OnUpdate(std::move(state));
}

void ManualResolver::ReportError(grpc::Status status) {
  std::shared_ptr<ResolverListener> listener;
  {
    std::lock_guard<std::mutex> lock(mu_);
    listener = listener_;
  }
  if (listener != nullptr) listener->OnError(std::move(status));
}

int ManualResolver::reresolution_requests() const {
  std::lock_guard<std::mutex> lock(mu_);
  return reresolution_requests_;
}

void ManualResolver::Start(std::shared_ptr<ResolverListener> listener) {
  bool has_state;
  ResolverState state;
  {
    std::lock_guard<std::mutex> lock(mu_);
    listener_ = listener;
    has_state = has_initial_state_;
    state = initial_state_;
  }
  if (has_state) listener->OnUpdate(std::move(state));
}

void ManualResolver::RequestReresolution() {
  std::lock_guard<std::mutex> lock(mu_);
  ++reresolution_requests_;
}

void ManualResolver::Shutdown() {
  std::lock_guard<std::mutex> lock(mu_);
  listener_ = nullptr;
}

namespace internal {
namespace {

class ManualResolverFactory final : public ResolverFactory {
 public:
  std::string scheme() const override { return "manual"; }
  grpc::Status Create(const Target& target, std::shared_ptr<Resolver>*) const override {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "target \"" + target.uri +
                            "\" needs a resolver: set ChannelOptions::resolver to a "
                            "lbkit::ManualResolver");
  }
};

}  // namespace

std::shared_ptr<const ResolverFactory> MakeManualResolverFactory() {
  return std::make_shared<ManualResolverFactory>();
}

}  // namespace internal
}  // namespace lbkit
