// load-aware-client: sends --count UnaryEcho calls through the load_aware
// policy to the endpoints of a static target, and prints how many calls each
// backend served. With lbkit-echo-server --report-load behind it, the split
// follows the weights in the target and the backends' reported CPU.
//
//   load-aware-client --target 'static:///127.0.0.1:50050;weight=3,127.0.0.1:50051'
#include <cstdio>
#include <map>
#include <string>

#include <grpcpp/client_context.h>
#include <grpcpp/security/credentials.h>
#include <lbkit/lbkit.h>

#include "echo.grpc.pb.h"
#include "flags.h"
#include "load_aware.h"

namespace {

constexpr char kUsage[] =
    "usage: load-aware-client --target static:///host:port;weight=N,... [--count N]\n"
    "                         [--metric cpu|application|named:NAME]\n"
    "  --target  the backends, with optional weights (default weight 1)\n"
    "  --count   calls to make (default 200)\n"
    "  --metric  which reported utilization lowers a backend's share (default cpu)\n";

// "... (from host:port)" gives "host:port" (lbkit-echo-server's replies).
std::string ServedBy(const std::string& reply) {
  size_t from = reply.rfind("(from ");
  if (from == std::string::npos || reply.empty() || reply.back() != ')') return "?";
  return reply.substr(from + 6, reply.size() - from - 7);
}

}  // namespace

int main(int argc, char** argv) {
  lbkit_example::Flags flags(argc, argv, {{"target", ""}, {"count", "200"}, {"metric", "cpu"}});
  if (flags.help()) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  long count = 0;
  if (!flags.error().empty() || !flags.GetInt("count", 1, 1000000, &count) ||
      flags.Get("target").empty()) {
    std::fprintf(stderr, "load-aware-client: %s\n%s",
                 flags.error().empty() ? "--target is required" : flags.error().c_str(), kUsage);
    return 2;
  }
  grpc::Status registered = load_aware::RegisterLoadAware();
  if (!registered.ok()) {
    std::fprintf(stderr, "load-aware-client: %s\n", registered.error_message().c_str());
    return 1;
  }
  nlohmann::json config = {
      {"loadBalancingConfig", {{{"load_aware", {{"metric", flags.Get("metric")}}}}}}};
  lbkit::ChannelOptions options;
  options.default_service_config = config.dump();
  grpc::Status status;
  auto channel = lbkit::CreateChannel(flags.Get("target"), grpc::InsecureChannelCredentials(),
                                      options, &status);
  if (!status.ok()) {
    std::fprintf(stderr, "load-aware-client: %s\n", status.error_message().c_str());
    return 2;
  }
  auto stub = grpc::examples::echo::Echo::NewStub(channel);
  std::map<std::string, int> served;
  for (long i = 0; i < count; ++i) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    context.set_wait_for_ready(true);  // the first calls wait for connections
    grpc::examples::echo::EchoRequest request;
    request.set_message("load");
    grpc::examples::echo::EchoResponse response;
    grpc::Status call = stub->UnaryEcho(&context, request, &response);
    if (!call.ok()) {
      std::fprintf(stderr, "load-aware-client: call %ld failed: %s\n", i + 1,
                   call.error_message().c_str());
      return 1;
    }
    ++served[ServedBy(response.message())];
  }
  for (const auto& [address, calls] : served) {
    std::printf("served by %s: %d\n", address.c_str(), calls);
  }
  return 0;
}
