// lbkit-echo-server: serves grpc.examples.echo.Echo on every address of
// --addrs; each reply names the address that served it. With --report-load,
// every call also carries a load report for client-side policies. Stops
// cleanly on SIGINT or SIGTERM. With --register, each address is announced
// in etcd for as long as the server runs (lbkit::EtcdRegistrar).
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/server.h>
#include <lbkit/etcd.h>
#include <lbkit/server_load_report.h>

#include "echo_service.h"
#include "flags.h"

namespace {

using Clock = std::chrono::steady_clock;

// The process's CPU use over the last whole second, as a fraction of all
// CPUs (0 until a second has passed). Shared by every address.
class ProcessCpu {
 public:
  double Utilization() {
    std::lock_guard<std::mutex> lock(mu_);
    Clock::time_point now = Clock::now();
    if (now - sampled_at_ >= std::chrono::seconds(1)) {
      double cpu = CpuSeconds();
      double wall = std::chrono::duration<double>(now - sampled_at_).count();
      utilization_ = (cpu - sampled_cpu_) / (wall * static_cast<double>(cpus_));
      sampled_at_ = now;
      sampled_cpu_ = cpu;
    }
    return utilization_;
  }

 private:
  static double CpuSeconds() {
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    auto seconds = [](const timeval& tv) {
      return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6;
    };
    return seconds(usage.ru_utime) + seconds(usage.ru_stime);
  }

  std::mutex mu_;
  const long cpus_ = std::max(1L, sysconf(_SC_NPROCESSORS_ONLN));
  Clock::time_point sampled_at_ = Clock::now();
  double sampled_cpu_ = CpuSeconds();
  double utilization_ = 0;
};

// --report-load for one address: adds a load report to every call's
// trailers (lbkit::AddLoadReportTrailer: gRPC's ORCA trailer
// endpoint-load-metrics-bin, and the copy lbkit's client reads) with
//   cpu_utilization            ProcessCpu above
//   qps                        calls this address started in the last whole second
//   named_metrics["echo.calls"] calls this address has started in all
class LoadReporter {
 public:
  explicit LoadReporter(ProcessCpu* cpu) : cpu_(cpu) {}

  void OnCall(grpc::ServerContext* context) {
    lbkit::LoadReport report;
    report.cpu_utilization = cpu_->Utilization();
    {
      std::lock_guard<std::mutex> lock(mu_);
      Clock::time_point now = Clock::now();
      if (now - window_start_ >= std::chrono::seconds(1)) {
        // The window just ended, or (idle for longer) an empty one did.
        last_window_calls_ = now - window_start_ < std::chrono::seconds(2) ? window_calls_ : 0;
        window_start_ = now;
        window_calls_ = 0;
      }
      ++window_calls_;
      ++calls_;
      report.qps = static_cast<double>(last_window_calls_);
      report.named_metrics["echo.calls"] = static_cast<double>(calls_);
    }
    lbkit::AddLoadReportTrailer(context, report);
  }

 private:
  ProcessCpu* cpu_;
  std::mutex mu_;
  Clock::time_point window_start_ = Clock::now();
  uint64_t window_calls_ = 0;
  uint64_t last_window_calls_ = 0;
  uint64_t calls_ = 0;
};

constexpr char kUsage[] =
    "usage: lbkit-echo-server [--addrs host:port,...] [--not-serving host:port,...]\n"
    "                         [--toggle host:port] [--report-load]\n"
    "                         [--register etcd://HOST:PORT,.../SERVICE [--weight N]\n"
    "                          [--ttl SECONDS]]\n"
    "  --addrs        addresses to serve on (default localhost:50050,localhost:50051);\n"
    "                 port 0 picks a free port, and the log line shows which\n"
    "  --not-serving  addresses whose health service starts NOT_SERVING\n"
    "  --toggle       the address whose health SIGUSR1 flips (default: the last one)\n"
    "  --report-load  send a load report with every call, in gRPC's ORCA trailer\n"
    "                 endpoint-load-metrics-bin and in the copy lbkit's client reads,\n"
    "                 lbkit-endpoint-load-metrics-bin: cpu_utilization (this process, last\n"
    "                 second, fraction of all CPUs), qps (calls this address started\n"
    "                 in the last second) and the named metric echo.calls (calls this\n"
    "                 address has started in all)\n"
    "  --register     announce every address in etcd under SERVICE (key SERVICE/ADDR,\n"
    "                 on a lease kept alive while the server runs; the address as bound,\n"
    "                 so it must be one clients can reach: not 0.0.0.0 or [::]); prints\n"
    "                 \"registered ADDR in TARGET\" once it is\n"
    "  --weight       the weight clients see for these addresses (default 1)\n"
    "  --ttl          the lease's time to live: a killed server disappears from clients\n"
    "                 this long after its last keepalive (default 10)\n"
    "Every address serves grpc.health.v1.Health (SERVING unless told otherwise).\n"
    "SIGINT or SIGTERM stops the server (after removing its etcd keys).\n";

// Whether `address` ("host:port") names a host clients can dial: not a
// wildcard that only means "every interface" to a server.
bool Reachable(const std::string& address) {
  size_t colon = address.rfind(':');
  std::string host = colon == std::string::npos ? address : address.substr(0, colon);
  return !host.empty() && host != "0.0.0.0" && host != "[::]" && host != "::" && host != "[::0]";
}

}  // namespace

int main(int argc, char** argv) {
  lbkit_example::Flags flags(argc, argv,
                             {{"addrs", "localhost:50050,localhost:50051"},
                              {"not-serving", ""},
                              {"toggle", ""},
                              {"report-load", "false"},
                              {"register", ""},
                              {"weight", "1"},
                              {"ttl", "10"}},
                             {"report-load"});
  if (flags.help()) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  std::vector<std::string> addrs = lbkit_example::SplitList(flags.Get("addrs"));
  long weight = 0, ttl = 0;
  if (!flags.error().empty() || addrs.empty() || !flags.GetInt("weight", 1, 4294967295L, &weight) ||
      !flags.GetInt("ttl", 1, 86400, &ttl)) {
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

  const std::string& register_target = flags.Get("register");
  if (!register_target.empty()) {
    for (const std::string& addr : addrs) {
      if (!Reachable(addr)) {
        std::fprintf(stderr,
                     "lbkit-echo-server: --register announces each address as clients must "
                     "dial it: %s is no address to dial (name the host, e.g. 127.0.0.1:%s)\n",
                     addr.c_str(), addr.substr(addr.rfind(':') + 1).c_str());
        return 2;
      }
    }
  }

  const std::string& report_load = flags.Get("report-load");
  if (report_load != "true" && report_load != "false") {
    std::fprintf(stderr, "lbkit-echo-server: --report-load takes no value (or true/false)\n%s",
                 kUsage);
    return 2;
  }

  ProcessCpu cpu;
  std::vector<std::unique_ptr<LoadReporter>> reporters;
  std::vector<std::unique_ptr<lbkit_example::EchoService>> services;
  std::vector<std::unique_ptr<grpc::Server>> servers;
  for (const std::string& addr : addrs) {
    auto service = std::make_unique<lbkit_example::EchoService>(addr);
    if (report_load == "true") {
      reporters.push_back(std::make_unique<LoadReporter>(&cpu));
      LoadReporter* reporter = reporters.back().get();
      service->set_call_hook(
          [reporter](grpc::ServerContext* context) { reporter->OnCall(context); });
    }
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

  // Registered once every address serves, so that clients never find one
  // that does not answer yet.
  std::vector<std::unique_ptr<lbkit::EtcdRegistrar>> registrars;
  if (!register_target.empty()) {
    for (const auto& service : services) {
      lbkit::EtcdRegistrarOptions options;
      options.target = register_target;
      options.address = service->label();
      options.attributes.weight = static_cast<uint32_t>(weight);
      options.ttl = std::chrono::seconds(ttl);
      std::unique_ptr<lbkit::EtcdRegistrar> registrar;
      grpc::Status status = lbkit::EtcdRegistrar::Create(options, &registrar);
      if (!status.ok()) {
        std::fprintf(stderr, "lbkit-echo-server: %s\n", status.error_message().c_str());
        registrars.clear();
        for (auto& server : servers) server->Shutdown();
        return 2;
      }
      registrars.push_back(std::move(registrar));
    }
  }
  // Says when each address is registered (scripts wait for these lines);
  // etcd may be down for a while, and the server serves meanwhile.
  std::atomic<bool> stopping{false};
  std::thread announcer([&] {
    for (size_t i = 0; i < registrars.size() && !stopping;) {
      if (!registrars[i]->WaitRegistered(std::chrono::milliseconds(100))) continue;
      std::printf("registered %s in %s\n", services[i]->label().c_str(), register_target.c_str());
      std::fflush(stdout);
      ++i;
    }
  });

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
  stopping = true;
  announcer.join();
  // Leave etcd first: clients stop picking this server before it refuses
  // connections.
  for (auto& registrar : registrars) registrar->Shutdown();
  for (auto& server : servers) server->Shutdown();
  for (auto& server : servers) server->Wait();
  return 0;
}
