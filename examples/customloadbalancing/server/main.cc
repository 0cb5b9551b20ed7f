// lbkit-echo-server: serves grpc.examples.echo.Echo on every address of
// --addrs; each reply names the address that served it. Stops cleanly on
// SIGINT or SIGTERM.
#include <signal.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/server.h>

#include "echo_service.h"
#include "flags.h"

namespace {

constexpr char kUsage[] =
    "usage: lbkit-echo-server [--addrs host:port,...]\n"
    "  --addrs  addresses to serve on (default localhost:50050,localhost:50051);\n"
    "           port 0 picks a free port, and the log line shows which\n";

}  // namespace

int main(int argc, char** argv) {
  lbkit_example::Flags flags(argc, argv, {{"addrs", "localhost:50050,localhost:50051"}});
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
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

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
    std::printf("serving on %s\n", bound.c_str());
    std::fflush(stdout);
    services.push_back(std::move(service));
    servers.push_back(std::move(server));
  }

  int signal_number = 0;
  sigwait(&signals, &signal_number);
  std::printf("received %s, stopping\n", signal_number == SIGINT ? "SIGINT" : "SIGTERM");
  std::fflush(stdout);
  for (auto& server : servers) server->Shutdown();
  for (auto& server : servers) server->Wait();
  return 0;
}
