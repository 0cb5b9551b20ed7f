// lbkit-echo-server: serves grpc.examples.echo.Echo on every address of
// --addrs; each reply names the address that served it. Stops cleanly on
// SIGINT or SIGTERM.
#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/server.h>

#include "echo_service.h"
#include "flags.h"

namespace {

constexpr char kUsage[] =
    "usage: lbkit-echo-server [--addrs host:port,...] [--not-serving host:port,...]\n"
    "                         [--toggle host:port]\n"
    "  --addrs        addresses to serve on (default localhost:50050,localhost:50051);\n"
    "                 port 0 picks a free port, and the log line shows which\n"
    "  --not-serving  addresses whose health service starts NOT_SERVING\n"
    "  --toggle       the address whose health SIGUSR1 flips (default: the last one)\n"
    "Every address serves grpc.health.v1.Health (SERVING unless told otherwise).\n"
    "SIGINT or SIGTERM stops the server.\n";

}  // namespace

int main(int argc, char** argv) {
  lbkit_example::Flags flags(
      argc, argv,
      {{"addrs", "localhost:50050,localhost:50051"}, {"not-serving", ""}, {"toggle", ""}});
  if (flags.help()) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  std::vector<std::string> addrs = lbkit_example::SplitList(flags.Get("addrs"));
  if (!flags.error().empty() || addrs.empty()) {
    std::fprintf(stderr, "lbkit-echo-server: %s\n%s",
                 flags.error().empty() ? "--addrs is empty" : flags.error().c_str(), kUsage);
    return 2;
  }

  // Handle SIGINT/SIGTERM synchronously: block them before gRPC starts its
  // threads, then wait for one here.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  std::vector<std::string> not_serving = lbkit_example::SplitList(flags.Get("not-serving"));
  std::string toggle = flags.Get("toggle").empty() ? addrs.back() : flags.Get("toggle");
  auto listed = [&addrs](const std::string& addr) {
    return std::find(addrs.begin(), addrs.end(), addr) != addrs.end();
  };
  for (const std::string& addr : not_serving) {
    if (!listed(addr)) {
      std::fprintf(stderr, "lbkit-echo-server: --not-serving %s is not in --addrs\n", addr.c_str());
      return 2;
    }
  }
  if (!listed(toggle)) {
    std::fprintf(stderr, "lbkit-echo-server: --toggle %s is not in --addrs\n", toggle.c_str());
    return 2;
  }

  std::vector<std::unique_ptr<lbkit_example::EchoService>> services;
  std::vector<std::unique_ptr<grpc::Server>> servers;
  for (const std::string& addr : addrs) {
    auto service = std::make_unique<lbkit_example::EchoService>(addr);
    int port = 0;
    std::string error;
    std::unique_ptr<grpc::Server> server =
        lbkit_example::StartEchoServer(addr, service.get(), &port, &error);
    if (server == nullptr) {
      std::fprintf(stderr, "lbkit-echo-server: %s\n", error.c_str());
      for (auto& s : servers) s->Shutdown();
      return 1;
    }
    std::string bound = lbkit_example::WithPort(addr, port);
    service->set_label(bound);
    bool healthy = std::find(not_serving.begin(), not_serving.end(), addr) == not_serving.end();
    lbkit_example::SetServing(*server, healthy);
    std::printf("serving on %s%s\n", bound.c_str(), healthy ? "" : " (health: NOT_SERVING)");
    std::fflush(stdout);
    services.push_back(std::move(service));
    servers.push_back(std::move(server));
  }

  const size_t toggle_index =
      static_cast<size_t>(std::find(addrs.begin(), addrs.end(), toggle) - addrs.begin());
  bool toggle_serving =
      std::find(not_serving.begin(), not_serving.end(), toggle) == not_serving.end();
  int signal_number = 0;
  for (;;) {
    sigwait(&signals, &signal_number);
    if (signal_number != SIGUSR1) break;
    toggle_serving = !toggle_serving;
    lbkit_example::SetServing(*servers[toggle_index], toggle_serving);
    std::printf("health of %s: %s\n", services[toggle_index]->label().c_str(),
                toggle_serving ? "SERVING" : "NOT_SERVING");
    std::fflush(stdout);
  }
  std::printf("received %s, stopping\n", signal_number == SIGINT ? "SIGINT" : "SIGTERM");
  std::fflush(stdout);
  for (auto& server : servers) server->Shutdown();
  for (auto& server : servers) server->Wait();
  return 0;
}
