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

#include "cli.h"
#include "echo_service.h"

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

constexpr char kDescription[] =
    "Serves grpc.examples.echo.Echo on every address of --addrs; each reply names\n"
    "the address that served it. Every address serves grpc.health.v1.Health\n"
    "(SERVING unless told otherwise). SIGINT or SIGTERM stops the server (after\n"
    "removing its etcd keys).";

// Whether `address` ("host:port") names a host clients can dial: not a
// wildcard that only means "every interface" to a server.
bool Reachable(const std::string& address) {
  const std::string host = lbkit_example::SplitHostPort(address).host;
  return !host.empty() && host != "0.0.0.0" && host != "[::]" && host != "::" && host != "[::0]";
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app(kDescription, "lbkit-echo-server");
  std::vector<std::string> addrs = {"localhost:50050", "localhost:50051"};
  std::vector<std::string> not_serving;
  std::string toggle, register_target;
  bool report_load = false;
  long weight = 1, ttl = 10;
  app.add_option("--addrs", addrs,
                 "addresses to serve on, a comma list; port 0 picks a free port, and the\n"
                 "log line shows which")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--not-serving", not_serving,
                 "addresses (of --addrs) whose health service starts NOT_SERVING")
      ->delimiter(',');
  app.add_option("--toggle", toggle,
                 "the address whose health SIGUSR1 flips (default: the last one)");
  app.add_flag("--report-load", report_load,
               "send a load report with every call, in gRPC's ORCA trailer\n"
               "endpoint-load-metrics-bin and in the copy lbkit's client reads,\n"
               "lbkit-endpoint-load-metrics-bin: cpu_utilization (this process, last\n"
               "second, fraction of all CPUs), qps (calls this address started in the\n"
               "last second) and the named metric echo.calls (calls this address has\n"
               "started in all)");
  app.add_option("--register", register_target,
                 "etcd://HOST:PORT,.../SERVICE: announce every address in etcd under\n"
                 "SERVICE (key SERVICE/ADDR, on a lease kept alive while the server runs;\n"
                 "the address as bound, so it must be one clients can reach: not 0.0.0.0\n"
                 "or [::]); prints \"registered ADDR in TARGET\" once it is");
  lbkit_example::AddNumber(app, "--weight", &weight, 1L, 4294967295L,
                           "the weight clients see for these addresses");
  lbkit_example::AddNumber(app, "--ttl", &ttl, 1L, 86400L,
                           "the lease's time to live, in seconds: a killed server disappears from\n"
                           "clients this long after its last keepalive");
  if (int status = lbkit_example::ParseCommandLine(app, argc, argv); status >= 0) return status;
  addrs.erase(std::remove(addrs.begin(), addrs.end(), ""), addrs.end());
  if (addrs.empty()) {
    std::fprintf(stderr, "lbkit-echo-server: --addrs is empty\n");
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

  if (toggle.empty()) toggle = addrs.back();
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

  if (!register_target.empty()) {
    for (const std::string& addr : addrs) {
      if (!Reachable(addr)) {
        std::fprintf(stderr,
                     "lbkit-echo-server: --register announces each address as clients must "
                     "dial it: %s is no address to dial (name the host, e.g. 127.0.0.1:%s)\n",
                     addr.c_str(), lbkit_example::SplitHostPort(addr).port.c_str());
        return 2;
      }
    }
  }

  ProcessCpu cpu;
  std::vector<std::unique_ptr<LoadReporter>> reporters;
  std::vector<std::unique_ptr<lbkit_example::EchoService>> services;
  std::vector<std::unique_ptr<grpc::Server>> servers;
  for (const std::string& addr : addrs) {
    auto service = std::make_unique<lbkit_example::EchoService>(addr);
    if (report_load) {
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
