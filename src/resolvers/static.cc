#include "resolvers/static.h"

#include "core/address.h"
#include "core/endpoint_attributes.h"
#include "core/shown_text.h"

#include <string_view>
#include <utility>

#include <absl/strings/ascii.h>
#include <absl/strings/str_split.h>

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
    auto invalid = [&target](const std::string& why) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "target \"" + Shown(target.uri) + "\": " + why);
    };
    // "static:////127.0.0.1:1" would otherwise read as the address
    // "/127.0.0.1:1" and fail with a misleading reason.
    if (!target.endpoint.empty() && target.endpoint[0] == '/') {
      return invalid(
          "the address list starts with '/' (one slash too many? expected "
          "static:///host:port; a socket is static:///unix:/path)");
    }
    ResolverState state;
    grpc::Status status = ParseEndpointList(target.endpoint, &state.endpoints);
    if (!status.ok()) return invalid(status.error_message());
    *resolver = std::make_shared<StaticResolver>(std::move(state));
    return grpc::Status::OK;
  }
};

// Without the whitespace around it. (Debian's absl::string_view is not
// std::string_view.)
std::string_view Trimmed(std::string_view text) {
  absl::string_view trimmed =
      absl::StripAsciiWhitespace(absl::string_view(text.data(), text.size()));
  return std::string_view(trimmed.data(), trimmed.size());
}

}  // namespace

grpc::Status ParseEndpointList(const std::string& list, std::vector<Endpoint>* endpoints) {
  std::vector<Endpoint> result;
  for (absl::string_view piece : absl::StrSplit(list, ',')) {
    std::string_view item = Trimmed(std::string_view(piece.data(), piece.size()));
    if (item.empty()) {
      return grpc::Status(
          grpc::StatusCode::INVALID_ARGUMENT,
          list.empty() ? "no addresses" : "empty address in \"" + Shown(list) + "\"");
    }
    size_t semicolon = item.find(';');
    Endpoint endpoint;
    endpoint.addresses.emplace_back(Trimmed(item.substr(0, semicolon)));
    const std::string& address = endpoint.addresses[0];
    if (address.empty()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "no address before ';' in \"" + Shown(item) + "\"");
    }
    grpc::Status status = CheckAddress(address);
    if (!status.ok()) return status;
    if (semicolon != std::string_view::npos) {
      std::string_view attributes = item.substr(semicolon + 1);
      if (attributes.empty()) {
        status = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "';' with nothing after it");
      } else {
        status = ParseEndpointAttributes(attributes, &endpoint.attributes);
      }
      if (!status.ok()) {
        return grpc::Status(status.error_code(),
                            "endpoint \"" + Shown(address) + "\": " + status.error_message());
      }
    }
    result.push_back(std::move(endpoint));
  }
  *endpoints = std::move(result);
  return grpc::Status::OK;
}

std::shared_ptr<const ResolverFactory> MakeStaticResolverFactory() {
  return std::make_shared<StaticResolverFactory>();
}

}  // namespace internal
}  // namespace lbkit
