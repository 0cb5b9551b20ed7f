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

#include "cli.h"
#include "echo.grpc.pb.h"
#include "load_aware.h"

namespace {

constexpr char kDescription[] =
    "Sends --count UnaryEcho calls through the load_aware policy to the endpoints\n"
    "of --target and prints how many calls each backend served.";

// "... (from host:port)" gives "host:port" (lbkit-echo-server's replies).
std::string ServedBy(const std::string& reply) {
  size_t from = reply.rfind("(from ");
  if (from == std::string::npos || reply.empty() || reply.back() != ')') return "?";
  return reply.substr(from + 6, reply.size() - from - 7);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app(kDescription, "load-aware-client");
  std::string target, metric = "cpu";
  long count = 200;
  app.add_option("--target", target,
                 "the backends, with optional weights (default weight 1), e.g.\n"
                 "static:///127.0.0.1:50050;weight=3,127.0.0.1:50051")
      ->required();
  lbkit_example::AddNumber(app, "--count", &count, 1L, 1000000L, "calls to make");
  app.add_option("--metric", metric,
                 "which reported utilization lowers a backend's share: cpu, application\n"
                 "or named:NAME")
      ->capture_default_str();
  if (int status = lbkit_example::ParseCommandLine(app, argc, argv); status >= 0) return status;
  grpc::Status registered = load_aware::RegisterLoadAware();
  if (!registered.ok()) {
    std::fprintf(stderr, "load-aware-client: %s\n", registered.error_message().c_str());
    return 1;
  }
  nlohmann::json config = {{"loadBalancingConfig", {{{"load_aware", {{"metric", metric}}}}}}};
  lbkit::ChannelOptions options;
  options.default_service_config = config.dump();
  grpc::Status status;
  auto channel = lbkit::CreateChannel(target, grpc::InsecureChannelCredentials(), options, &status);
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
