#include "resolvers/static.h"

#include "core/address.h"

#include <cctype>
#include <utility>

namespace lbkit {
namespace internal {
namespace {

class StaticResolver final : public Resolver {
 public:
  explicit StaticResolver(ResolverState state) : state_(std::move(state)) {}
  void Start(std::shared_ptr<ResolverListener> listener) override { listener->OnUpdate(state_); }
  void Shutdown() override {}

 private:
  ResolverState state_;
};

class StaticResolverFactory final : public ResolverFactory {
 public:
  std::string scheme() const override { return "static"; }
  grpc::Status Create(const Target& target, std::shared_ptr<Resolver>* resolver) const override {
    std::vector<std::string> addresses;
    grpc::Status status = ParseAddressList(target.endpoint, &addresses);
    if (!status.ok()) {
      return grpc::Status(status.error_code(),
                          "target \"" + target.uri + "\": " + status.error_message());
    }
    ResolverState state;
    for (std::string& address : addresses)
      state.endpoints.push_back(Endpoint{{std::move(address)}});
    *resolver = std::make_shared<StaticResolver>(std::move(state));
    return grpc::Status::OK;
  }
};

}  // namespace

grpc::Status ParseAddressList(const std::string& list, std::vector<std::string>* addresses) {
  std::vector<std::string> result;
  size_t start = 0;
  while (start <= list.size()) {
    size_t end = list.find(',', start);
    if (end == std::string::npos) end = list.size();
    std::string address = list.substr(start, end - start);
    size_t first = address.find_first_not_of(" \t");
    size_t last = address.find_last_not_of(" \t");
    address = first == std::string::npos ? "" : address.substr(first, last - first + 1);
    if (address.empty()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          list.empty() ? "no addresses" : "empty address in \"" + list + "\"");
    }
    grpc::Status status = CheckAddress(address);
    if (!status.ok()) return status;
    result.push_back(std::move(address));
    start = end + 1;
  }
  *addresses = std::move(result);
  return grpc::Status::OK;
}

std::shared_ptr<const ResolverFactory> MakeStaticResolverFactory() {
  return std::make_shared<StaticResolverFactory>();
}

}  // namespace internal
}  // namespace lbkit
