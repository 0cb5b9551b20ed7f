// lbkit-echo-client: the seed example's client. A manual resolver gives one
// endpoint per address of --addrs; the service config selects
// custom_round_robin with chooseSecond; it sends --count UnaryEcho calls,
// prints each reply, and checks from each call's peer that every
// chooseSecond-th call went to the second server and the rest to the first.
#include <chrono>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include <grpcpp/client_context.h>
#include <grpcpp/security/credentials.h>
#include <lbkit/lbkit.h>

#include "custom_round_robin.h"
#include "echo.grpc.pb.h"
#include "flags.h"

namespace {

constexpr char kUsage[] =
    "usage: lbkit-echo-client [--addrs host:port,host:port] [--choose-second N]\n"
    "                         [--count N] [--timeout SECONDS]\n"
    "  --addrs          the two servers (default localhost:50050,localhost:50051)\n"
    "  --choose-second  every N-th call goes to the second server (default 3; 0: never)\n"
    "  --count          calls to make (default 9)\n"
    "  --timeout        give up after this many seconds (default 10)\n";

// The port of "host:port" or of a gRPC peer such as "ipv4:127.0.0.1:50050".
std::string PortOf(const std::string& address) {
  size_t colon = address.rfind(':');
  return colon == std::string::npos ? "" : address.substr(colon + 1);
}

const char* CodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::UNAVAILABLE:
      return "UNAVAILABLE";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::CANCELLED:
      return "CANCELLED";
    case grpc::StatusCode::INTERNAL:
      return "INTERNAL";
    default:
      return "error";
  }
}

}  // namespace

int main(int argc, char** argv) {
  lbkit_example::Flags flags(argc, argv,
                             {{"addrs", "localhost:50050,localhost:50051"},
                              {"choose-second", "3"},
                              {"count", "9"},
                              {"timeout", "10"}});
  if (flags.help()) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  long choose_second = 0, count = 0, timeout = 0;
  std::vector<std::string> addrs = lbkit_example::SplitList(flags.Get("addrs"));
  if (flags.error().empty() && addrs.size() != 2) {
    std::fprintf(stderr, "lbkit-echo-client: --addrs needs exactly two addresses\n%s", kUsage);
    return 2;
  }
  if (!flags.error().empty() || !flags.GetInt("choose-second", 0, 4294967295L, &choose_second) ||
      !flags.GetInt("count", 1, 1000000, &count) || !flags.GetInt("timeout", 1, 3600, &timeout)) {
    std::fprintf(stderr, "lbkit-echo-client: %s\n%s", flags.error().c_str(), kUsage);
    return 2;
  }
  if (PortOf(addrs[0]) == PortOf(addrs[1])) {
    std::fprintf(stderr, "lbkit-echo-client: the two addresses must differ in port\n");
    return 2;
  }

  customlb::RegisterCustomRoundRobin();
  auto resolver = lbkit::ManualResolver::Create();
  lbkit::ResolverState state;
  for (const std::string& addr : addrs) state.endpoints.push_back(lbkit::Endpoint{{addr}});
  state.service_config = R"({"loadBalancingConfig":[{"custom_round_robin":{"chooseSecond":)" +
                         std::to_string(choose_second) + "}}]}";
  resolver->SetInitialState(state);
  lbkit::ChannelOptions options;
  options.resolver = resolver;
  auto channel = lbkit::CreateChannel("manual:///", grpc::InsecureChannelCredentials(), options);
  auto stub = grpc::examples::echo::Echo::NewStub(channel);

  const auto deadline = std::chrono::system_clock::now() + std::chrono::seconds(timeout);
  std::map<std::string, long> served;  // by address
  long mismatches = 0;
  for (long n = 1; n <= count; ++n) {
    grpc::ClientContext context;
    context.set_deadline(deadline);
    grpc::examples::echo::EchoRequest request;
    request.set_message("this is examples/customloadbalancing");
    grpc::examples::echo::EchoResponse response;
    grpc::Status status = stub->UnaryEcho(&context, request, &response);
    if (!status.ok()) {
      std::fprintf(stderr, "lbkit-echo-client: call %ld failed: %s: %s%s\n", n,
                   CodeName(status.error_code()), status.error_message().c_str(),
                   status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED
                       ? " (are both servers running?)"
                       : "");
      return 1;
    }
    std::printf("%s\n", response.message().c_str());
    std::string peer_port = PortOf(context.peer());
    size_t expected = (choose_second != 0 && n % choose_second == 0) ? 1 : 0;
    if (PortOf(addrs[expected]) != peer_port) ++mismatches;
    for (const std::string& addr : addrs) {
      if (PortOf(addr) == peer_port) ++served[addr];
    }
  }

  long second = choose_second == 0 ? 0 : count / choose_second;
  std::printf("summary: %s served %ld, %s served %ld (chooseSecond=%ld expects %ld:%ld) %s\n",
              addrs[0].c_str(), served[addrs[0]], addrs[1].c_str(), served[addrs[1]], choose_second,
              count - second, second, mismatches == 0 ? "OK" : "MISMATCH");
  return mismatches == 0 ? 0 : 1;
}
