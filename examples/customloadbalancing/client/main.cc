// lbkit-echo-client: the seed example's client. A manual resolver gives one
// endpoint per address of --addrs; the service config selects
// custom_round_robin with chooseSecond; it sends --count UnaryEcho calls,
// prints each reply, and checks from the address each reply names (the
// servers include it, as the seed example says) that every chooseSecond-th
// call went to the second server and the rest to the first. With --target,
// the channel finds its servers through that target's resolver instead
// (e.g. etcd://127.0.0.1:2379/echo), and the client counts the calls each
// server answered.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/client_context.h>
#include <grpcpp/security/credentials.h>
#include <lbkit/lbkit.h>

#include "cli.h"
#include "custom_round_robin.h"
#include "echo.grpc.pb.h"
#include "echo_service.h"

namespace {

constexpr char kDescription[] =
    "Sends --count UnaryEcho calls over an lbkit channel whose service config\n"
    "selects --policy, prints each reply and a summary. With custom_round_robin\n"
    "over two --addrs it checks the split: every --choose-second-th call goes to\n"
    "the second server, the rest to the first.";

// The address a reply names: "... (from localhost:50050)" gives
// "localhost:50050". Not the call's peer(): a call that had to wait for a
// connection reaches its server through lbkit's in-process relay, and its
// peer() names the relay (docs/queued-calls.md).
std::string ServedBy(const std::string& reply) {
  size_t from = reply.rfind("(from ");
  if (from == std::string::npos || reply.back() != ')') return "";
  return reply.substr(from + 6, reply.size() - from - 7);
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

std::string Pad(const std::string& text, size_t width) {
  return text.size() >= width ? text + " " : text + std::string(width - text.size(), ' ');
}

// The channel's snapshot as a small table with a bar per backend.
void PrintStats(const lbkit::ChannelSnapshot& snapshot) {
  std::printf("channel %s: policy %s, %s%s\n", snapshot.target.c_str(), snapshot.policy.c_str(),
              lbkit::ToString(snapshot.state),
              snapshot.last_error.empty() ? "" : (" (" + snapshot.last_error + ")").c_str());
  uint64_t most = 1;
  for (const auto& sc : snapshot.subchannels) most = std::max<uint64_t>(most, sc.calls_started);
  std::printf("  %s%s%s%s\n", Pad("backend", 22).c_str(), Pad("state", 19).c_str(),
              Pad("health", 14).c_str(), "calls");
  for (const auto& sc : snapshot.subchannels) {
    std::string bar(static_cast<size_t>(30 * sc.calls_started / most), '#');
    std::printf("  %s%s%s%6llu %s\n", Pad(sc.address, 22).c_str(),
                Pad(lbkit::ToString(sc.state), 19).c_str(),
                Pad(sc.health.empty() ? "-" : sc.health, 14).c_str(),
                static_cast<unsigned long long>(sc.calls_started), bar.c_str());
    if (!sc.last_error.empty()) std::printf("    last error: %s\n", sc.last_error.c_str());
  }
}

// The channel's snapshot once no connection is still on its way (connecting,
// or connected and waiting for its first health report), or after 2 s: the
// calls may all have been served before a slower backend's state is known.
lbkit::ChannelSnapshot SettledSnapshot(lbkit::Channel& channel) {
  auto settled = [](const lbkit::ChannelSnapshot& snapshot) {
    for (const auto& sc : snapshot.subchannels) {
      if (sc.state == lbkit::ConnectivityState::kConnecting || sc.health == "waiting") return false;
    }
    return true;
  };
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  lbkit::ChannelSnapshot snapshot = channel.Snapshot();
  while (!settled(snapshot) && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    snapshot = channel.Snapshot();
  }
  return snapshot;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app(kDescription, "lbkit-echo-client");
  std::vector<std::string> addrs = {"localhost:50050", "localhost:50051"};
  long choose_second = 3, count = 9, timeout = 10, interval = 0;
  std::string policy = "custom_round_robin", health_service, target;
  bool stats = false;
  app.add_option("--addrs", addrs, "the servers, a comma list of host:port")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--target", target,
                 "find the servers through this target instead of --addrs, e.g.\n"
                 "etcd://127.0.0.1:2379/echo (servers started with --register); the split\n"
                 "is then not checked, a failed call does not stop the client, and the\n"
                 "summary counts the calls each server answered");
  lbkit_example::AddNumber(app, "--choose-second", &choose_second, 0L, 4294967295L,
                           "every N-th call goes to the second server (0: never)");
  lbkit_example::AddNumber(app, "--count", &count, 1L, 1000000L, "calls to make");
  lbkit_example::AddNumber(app, "--timeout", &timeout, 1L, 3600L,
                           "give up after this many seconds");
  app.add_option("--policy", policy,
                 "custom_round_robin (the split is checked), round_robin or pick_first")
      ->check(CLI::IsMember({"custom_round_robin", "round_robin", "pick_first"}))
      ->capture_default_str();
  CLI::Option* health =
      app.add_option("--health-service", health_service,
                     "turn on client-side health checking for this service name (\"\" is the\n"
                     "server's overall health)");
  lbkit_example::AddNumber(app, "--interval", &interval, 0L, 60000L,
                           "pause between calls, in milliseconds");
  app.add_flag("--stats", stats,
               "print the channel's subchannels and their call counts at the end, once\n"
               "their states are known (at most 2 s later)");
  if (int status = lbkit_example::ParseCommandLine(app, argc, argv); status >= 0) return status;

  const bool custom = policy == "custom_round_robin";
  // The split is checked against --addrs; a target's servers come and go.
  const bool check_split = custom && target.empty();
  addrs.erase(std::remove(addrs.begin(), addrs.end(), ""), addrs.end());
  if (addrs.empty()) {
    std::fprintf(stderr, "lbkit-echo-client: --addrs is empty\n");
    return 2;
  }
  // Replies are matched to the servers by port (a reply names the address
  // its server was started with, which may be another name for the host).
  for (size_t i = 0; i < addrs.size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      if (addrs[i] == addrs[j]) {
        std::fprintf(stderr,
                     "lbkit-echo-client: --addrs names %s twice: the same address is one "
                     "endpoint (one server), so give each server once\n",
                     addrs[i].c_str());
        return 2;
      }
      if (lbkit_example::SplitHostPort(addrs[i]).port ==
          lbkit_example::SplitHostPort(addrs[j]).port) {
        std::fprintf(stderr,
                     "lbkit-echo-client: --addrs %s and %s share port %s: the servers must "
                     "differ in port (each reply is matched to its server by port)\n",
                     addrs[j].c_str(), addrs[i].c_str(),
                     lbkit_example::SplitHostPort(addrs[i]).port.c_str());
        return 2;
      }
    }
  }
  if (check_split && addrs.size() != 2) {
    std::fprintf(stderr, "lbkit-echo-client: custom_round_robin needs exactly two --addrs\n");
    return 2;
  }

  if (grpc::Status registered = customlb::RegisterCustomRoundRobin(); !registered.ok()) {
    std::fprintf(stderr, "lbkit-echo-client: %s\n", registered.error_message().c_str());
    return 1;
  }
  nlohmann::json config = {{"loadBalancingConfig",
                            {{{policy, custom ? nlohmann::json{{"chooseSecond", choose_second}}
                                              : nlohmann::json::object()}}}}};
  if (health->count() > 0) config["healthCheckConfig"] = {{"serviceName", health_service}};
  lbkit::ChannelOptions options;
  if (target.empty()) {
    auto resolver = lbkit::ManualResolver::Create();
    lbkit::ResolverState state;
    for (const std::string& addr : addrs) state.endpoints.push_back(lbkit::Endpoint{{addr}});
    state.service_config = config.dump();
    resolver->SetInitialState(state);
    options.resolver = resolver;
  } else {
    // The resolver may give no service config (etcd's does not).
    options.default_service_config = config.dump();
  }
  auto channel = lbkit::CreateChannel(target.empty() ? "manual:///" : target,
                                      grpc::InsecureChannelCredentials(), options);
  auto stub = grpc::examples::echo::Echo::NewStub(channel);

  const auto deadline = std::chrono::system_clock::now() + std::chrono::seconds(timeout);
  std::map<std::string, long> served;  // by address
  long mismatches = 0;
  int exit_code = 0;
  for (long n = 1; n <= count; ++n) {
    if (n > 1 && interval > 0) std::this_thread::sleep_for(std::chrono::milliseconds(interval));
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
                       ? " (are the servers running?)"
                       : "");
      exit_code = 1;
      // A target's servers come and go: the next call may find another.
      if (target.empty() || status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) break;
      continue;
    }
    std::printf("%s\n", response.message().c_str());
    std::fflush(stdout);
    if (!target.empty()) {
      ++served[ServedBy(response.message())];
      continue;
    }
    std::string served_port = lbkit_example::SplitHostPort(ServedBy(response.message())).port;
    size_t expected = (choose_second != 0 && n % choose_second == 0) ? 1 : 0;
    if (custom && lbkit_example::SplitHostPort(addrs[expected]).port != served_port) ++mismatches;
    for (const std::string& addr : addrs) {
      if (lbkit_example::SplitHostPort(addr).port == served_port) ++served[addr];
    }
  }

  if (!target.empty()) {
    std::string counts;
    for (const auto& [addr, calls] : served) {
      counts += (counts.empty() ? "" : ", ") + addr + " served " + std::to_string(calls);
    }
    std::printf("summary: %s (%s, %s)\n", counts.empty() ? "no call served" : counts.c_str(),
                policy.c_str(), target.c_str());
  } else if (exit_code == 0) {
    std::string counts;
    for (const std::string& addr : addrs) {
      counts += (counts.empty() ? "" : ", ") + addr + " served " + std::to_string(served[addr]);
    }
    if (custom) {
      long second = choose_second == 0 ? 0 : count / choose_second;
      std::printf("summary: %s (chooseSecond=%ld expects %ld:%ld) %s\n", counts.c_str(),
                  choose_second, count - second, second, mismatches == 0 ? "OK" : "MISMATCH");
      if (mismatches != 0) exit_code = 1;
    } else {
      std::printf("summary: %s (%s)\n", counts.c_str(), policy.c_str());
    }
  }
  if (stats) PrintStats(SettledSnapshot(*channel));
  return exit_code;
}
