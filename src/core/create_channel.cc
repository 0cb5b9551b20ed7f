// lbkit::CreateChannel (channel.h): from a target to a running channel.

#include <memory>
#include <string>
#include <utility>

#include <grpcpp/security/credentials.h>

#include "core/client_conn.h"
#include "core/stub_adapter/stub_adapter.h"
#include "core/trace.h"
#include "lbkit/channel.h"

namespace lbkit {

std::shared_ptr<Channel> CreateChannel(const std::string& target,
                                       const std::shared_ptr<grpc::ChannelCredentials>& credentials,
                                       const ChannelOptions& options, grpc::Status* status) {
  grpc::Status result;
  std::shared_ptr<Resolver> resolver = options.resolver;
  Target parsed;
  if (credentials == nullptr) {
    result = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "lbkit::CreateChannel: credentials must not be null");
  } else if (resolver == nullptr) {
    result = ParseTarget(target, &parsed);
    if (result.ok()) {
      std::shared_ptr<const ResolverFactory> factory = FindResolverFactory(parsed.scheme);
      if (factory == nullptr) {
        std::string schemes;
        for (const std::string& scheme : RegisteredResolverSchemes()) {
          schemes += (schemes.empty() ? "" : ", ") + scheme;
        }
        result = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                              "unknown scheme \"" + parsed.scheme + "\" in target \"" + target +
                                  "\" (registered: " + schemes +
                                  "; for a list of addresses use \"static:///host:port,...\")");
      } else {
        result = factory->Create(parsed, &resolver);
        if (result.ok() && resolver == nullptr) {
          result = grpc::Status(grpc::StatusCode::INTERNAL,
                                "resolver factory for \"" + parsed.scheme + "\" built nothing");
        }
      }
    }
  }
  if (result.ok()) {
    // As gRPC's client channel does, an invalid default service config makes
    // the channel unusable whatever the resolver later supplies (C-core's
    // channel creation fails and it hands out a lame channel).
    ServiceConfig unused;
    grpc::Status config = ParseServiceConfig(options.default_service_config, &unused);
    if (!config.ok()) {
      result = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                            "ChannelOptions::default_service_config: " + config.error_message());
    }
  }
  auto conn = std::make_shared<internal::ClientConn>(
      target, credentials ? credentials : grpc::InsecureChannelCredentials(), options);
  // The facade before the start: it takes lbkit's hold on gRPC's callback
  // queue before any subchannel can make a callback call (stub_adapter.h).
  std::shared_ptr<Channel> channel = internal::NewChannelFacade(conn);
  if (result.ok()) {
    conn->Start(std::move(resolver));
  } else {
    internal::Trace(internal::TraceFlag::kResolver, result.error_message());
    conn->StartFailed(result);
  }
  if (status != nullptr) *status = result;
  return channel;
}

}  // namespace lbkit
