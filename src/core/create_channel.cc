// lbkit::CreateChannel (channel.h): from a target to a running channel.

#include <memory>
#include <string>
#include <utility>

#include <absl/strings/str_join.h>
#include <grpc/grpc.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>

#include "core/client_conn.h"
#include "core/stub_adapter/stub_adapter.h"
#include "core/trace.h"
#include "lbkit/channel.h"

namespace lbkit {
namespace {

// A team moving from a plain grpc::Channel sets its service config with
// ChannelArguments::SetServiceConfigJSON (GRPC_ARG_SERVICE_CONFIG). gRPC
// treats that as the channel's default config, and so does lbkit: it becomes
// ChannelOptions::default_service_config and leaves the arguments, which go
// to every subchannel's grpc::Channel (where it would pick their policy and
// clash with the methodConfig part lbkit hands them). Given in both places
// with different text, it is an error: lbkit will not guess which one wins.
grpc::Status TakeServiceConfigArg(ChannelOptions* options) {
  const grpc_channel_args c_args = options->channel_args.c_channel_args();
  const char* json = nullptr;
  for (size_t i = 0; i < c_args.num_args; ++i) {
    const grpc_arg& arg = c_args.args[i];
    if (std::string(arg.key) == GRPC_ARG_SERVICE_CONFIG && arg.type == GRPC_ARG_STRING) {
      json = arg.value.string;  // gRPC reads the last one given
    }
  }
  if (json == nullptr) return grpc::Status::OK;
  const std::string from_args = json;
  grpc::ChannelArguments rest;
  for (size_t i = 0; i < c_args.num_args; ++i) {
    const grpc_arg& arg = c_args.args[i];
    if (std::string(arg.key) == GRPC_ARG_SERVICE_CONFIG) continue;
    switch (arg.type) {
      case GRPC_ARG_STRING:
        rest.SetString(arg.key, arg.value.string);
        break;
      case GRPC_ARG_INTEGER:
        rest.SetInt(arg.key, arg.value.integer);
        break;
      case GRPC_ARG_POINTER:
        rest.SetPointerWithVtable(arg.key, arg.value.pointer.p, arg.value.pointer.vtable);
        break;
    }
  }
  options->channel_args = std::move(rest);
  if (!options->default_service_config.empty() && options->default_service_config != from_args) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "a service config is given twice, different in ChannelOptions::"
                        "default_service_config and in ChannelOptions::channel_args "
                        "(GRPC_ARG_SERVICE_CONFIG): give it in one place");
  }
  options->default_service_config = from_args;
  return grpc::Status::OK;
}

}  // namespace

std::shared_ptr<Channel> CreateChannel(const std::string& target,
                                       const std::shared_ptr<grpc::ChannelCredentials>& credentials,
                                       const ChannelOptions& given, grpc::Status* status) {
  ChannelOptions options = given;
  grpc::Status result = TakeServiceConfigArg(&options);
  std::shared_ptr<Resolver> resolver = options.resolver;
  Target parsed;
  if (!result.ok()) {
    // reported below, like any other reason the channel cannot work
  } else if (credentials == nullptr) {
    result = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "lbkit::CreateChannel: credentials must not be null");
  } else if (resolver == nullptr) {
    result = ParseTarget(target, &parsed);
    if (result.ok()) {
      std::shared_ptr<const ResolverFactory> factory = FindResolverFactory(parsed.scheme);
      if (factory == nullptr) {
        result =
            grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                         "unknown scheme \"" + parsed.scheme + "\" in target \"" + target +
                             "\" (registered: " + absl::StrJoin(RegisteredResolverSchemes(), ", ") +
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
      target, credentials ? credentials : grpc::InsecureChannelCredentials(), std::move(options));
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
