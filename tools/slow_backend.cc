// lbkit-bench --scenario slow-backend: why the built-in policies exist,
// shown side by side (GitHub issue 9; docs/performance.md).
//
// Four echo backends in this process (127.0.0.1, ports the kernel picks) and
// an open-loop client: calls are started at a fixed rate whatever happens to
// the earlier ones, and each call's latency is measured from the moment it was
// scheduled to start, so a backend that falls behind shows in the figures
// instead of slowing the load down (no coordinated omission).
//
// Two experiments, each a table:
//
//   slow     backend b3 takes --delay (5ms) longer per call than the others,
//            and every backend reports its load (lbkit::AddLoadReportTrailer):
//            qps as it measures it, and application utilization qps x cost,
//            where cost is --delay plus 0.5ms for b3 and 0.5ms for the
//            others, so b3's utilization is proportionally higher.
//            Channels: native and lbkit round_robin, least_request,
//            weighted_round_robin, ring_hash (no hash header: a random hash
//            per call, A76).
//   failing  backend b0 fails every other call (UNAVAILABLE). Channels:
//            native and lbkit round_robin, and outlier_detection over
//            round_robin (failure-percentage ejection, 1s interval). Each round
//            starts a fresh channel and measures from its first call, so the
//            time outlier_detection needs to notice b0 is in the figures.
//
// Rounds alternate the channels (A B C A B C ...), so a slow moment of the
// shared machine hits every channel alike. The ratios are against
// native_round_robin of the same experiment and run.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <absl/strings/str_join.h>
#include <grpcpp/grpcpp.h>
#include <lbkit/lbkit.h>
#include <lbkit/server_load_report.h>
#include <nlohmann/json.hpp>

#include "bench_util.h"
#include "cli.h"
#include "echo.grpc.pb.h"
#include "scenarios.h"

namespace lbkit_bench {
namespace {

using Clock = std::chrono::steady_clock;
using grpc::examples::echo::Echo;
using grpc::examples::echo::EchoRequest;
using grpc::examples::echo::EchoResponse;

constexpr int kBackends = 4;
constexpr int kSlowBackend = 3;
constexpr int kFailingBackend = 0;
constexpr std::chrono::microseconds kBaseCost(500);  // what a call "costs" a fast backend

const std::vector<std::string> kExperiments = {"slow", "failing"};

struct Flags {
  std::vector<std::string> experiments = kExperiments;
  int rate = 2000;  // calls per second
  std::chrono::nanoseconds duration = std::chrono::seconds(5);
  std::chrono::nanoseconds warmup = std::chrono::seconds(4);
  std::chrono::nanoseconds delay = std::chrono::milliseconds(5);
  int rounds = 3;
  std::string json_path;
  bool progress = true;
};

// Fills `flags` from argv[3..) (argv[1..2] name the scenario): -1 to go on,
// else the status to exit with (--help, a bad flag).
int ParseFlags(int argc, char** argv, Flags* flags) {
  CLI::App app(R"(Four echo backends in this process, one of them slow (or failing), and an
open-loop client at a fixed rate; latency from each call's scheduled start.
Prints, per policy, the latency percentiles, the share of calls the slow
backend served (or the share that failed) and ratios to native gRPC
round_robin measured in the same run.)",
               "lbkit-bench --scenario slow-backend");
  AddNames(app, "--experiments", &flags->experiments, kExperiments,
           "comma list of slow,failing (default both)");
  lbkit_example::AddNumber(app, "--rate", &flags->rate, 1, 100000, "calls started per second");
  AddDuration(app, "--duration", &flags->duration, /*allow_zero=*/false,
              "measured time per channel per round");
  AddDuration(app, "--warmup", &flags->warmup, /*allow_zero=*/true,
              "slow experiment: unmeasured run per channel first (weighted_round_robin's\n"
              "blackout period here is 2s)");
  AddDuration(app, "--delay", &flags->delay, /*allow_zero=*/true,
              "the slow backend's extra time per call");
  lbkit_example::AddNumber(app, "--rounds", &flags->rounds, 1, 1000, "rounds");
  AddJsonPath(app, &flags->json_path);
  app.add_flag_callback(
      "--no-progress", [flags] { flags->progress = false; }, "no progress line on stderr");
  if (int status = lbkit_example::ParseCommandLine(app, argc - 2, argv + 2); status >= 0) {
    return status;
  }
  const double calls = flags->rate * std::chrono::duration<double>(flags->duration).count();
  if (calls > 10e6) throw UsageError("--rate x --duration: more than 10 million calls a round");
  return -1;
}

// ---------------------------------------------------------------------------
// Backends

// A sync echo service whose reply is its label ("b0".."b3"). Its extra delay
// stands for work the backend does (a sleep: it costs the shared machine no
// CPU). Every call carries a load report; failures name the backend too.
class Backend final : public Echo::Service {
 public:
  explicit Backend(std::string label) : label_(std::move(label)) {}

  void Configure(std::chrono::nanoseconds delay, bool fail_every_other) {
    delay_ns_.store(delay.count());
    fail_every_other_.store(fail_every_other);
  }

  grpc::Status UnaryEcho(grpc::ServerContext* context, const EchoRequest*,
                         EchoResponse* response) override {
    const std::chrono::nanoseconds delay(delay_ns_.load());
    if (delay.count() > 0) std::this_thread::sleep_for(delay);
    const double rate = CountCall();
    if (rate > 0) {
      lbkit::LoadReport report;
      report.qps = rate;
      report.application_utilization =
          rate * std::chrono::duration<double>(delay + kBaseCost).count();
      lbkit::AddLoadReportTrailer(context, report);
    }
    if (fail_every_other_.load() && calls_.fetch_add(1) % 2 == 1) {
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, "injected failure at " + label_);
    }
    response->set_message(label_);
    return grpc::Status::OK;
  }

 private:
  // Calls per second over the last full half-second window (0 before one).
  double CountCall() {
    std::lock_guard<std::mutex> lock(mu_);
    const Clock::time_point now = Clock::now();
    if (window_count_ == 0 && window_start_ == Clock::time_point()) window_start_ = now;
    const double elapsed = std::chrono::duration<double>(now - window_start_).count();
    if (elapsed >= 0.5) {
      last_rate_ = static_cast<double>(window_count_) / elapsed;
      window_start_ = now;
      window_count_ = 0;
    }
    ++window_count_;
    return last_rate_;
  }

  const std::string label_;
  std::atomic<int64_t> delay_ns_{0};
  std::atomic<bool> fail_every_other_{false};
  std::atomic<uint64_t> calls_{0};
  std::mutex mu_;
  Clock::time_point window_start_;
  uint64_t window_count_ = 0;
  double last_rate_ = 0;
};

struct Backends {
  std::vector<std::unique_ptr<Backend>> services;
  std::vector<std::unique_ptr<grpc::Server>> servers;
  std::vector<std::string> addresses;

  Backends() {
    for (int i = 0; i < kBackends; ++i) {
      services.push_back(std::make_unique<Backend>("b" + std::to_string(i)));
      grpc::ServerBuilder builder;
      int port = 0;
      builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
      builder.RegisterService(services.back().get());
      servers.push_back(builder.BuildAndStart());
      if (servers.back() == nullptr || port == 0) {
        throw std::runtime_error("could not start a backend on 127.0.0.1:0");
      }
      addresses.push_back("127.0.0.1:" + std::to_string(port));
    }
  }
  ~Backends() {
    for (auto& server : servers)
      server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  }
  std::string List() const { return absl::StrJoin(addresses, ","); }
};

// ---------------------------------------------------------------------------
// Channels

struct ChannelSpec {
  std::string id;
  std::string policy;  // lbkit policy name, or "" for native round_robin
  std::string config;  // service config JSON
  std::string description;
};

std::string LbConfig(const std::string& policy, const std::string& body) {
  return R"({"loadBalancingConfig":[{")" + policy + R"(":)" + body + "}]}";
}

std::vector<ChannelSpec> ChannelsFor(const std::string& experiment) {
  const std::string rr = LbConfig("round_robin", "{}");
  std::vector<ChannelSpec> specs = {
      {"native_round_robin", "", rr, "gRPC, round_robin"},
      {"lbkit_round_robin", "round_robin", rr, "lbkit, round_robin"},
  };
  if (experiment == "slow") {
    specs.push_back({"lbkit_least_request", "least_request", LbConfig("least_request", "{}"),
                     "lbkit, least_request (choiceCount 2)"});
    specs.push_back({"lbkit_weighted_round_robin", "weighted_round_robin",
                     LbConfig("weighted_round_robin", R"({"blackoutPeriod":"2s"})"),
                     "lbkit, weighted_round_robin (blackoutPeriod 2s)"});
    specs.push_back({"lbkit_ring_hash", "ring_hash", LbConfig("ring_hash", "{}"),
                     "lbkit, ring_hash (random hash per call)"});
  } else {
    specs.push_back(
        {"lbkit_outlier_detection", "outlier_detection",
         LbConfig("outlier_detection",
                  R"({"interval":"1s","baseEjectionTime":"30s","maxEjectionPercent":25,)"
                  R"("failurePercentageEjection":{"threshold":30,"minimumHosts":4,)"
                  R"("requestVolume":20},"childPolicy":[{"round_robin":{}}]})"),
         "lbkit, outlier_detection over round_robin"});
  }
  return specs;
}

struct OpenChannel {
  std::shared_ptr<grpc::ChannelInterface> channel;
  std::unique_ptr<Echo::Stub> stub;
};

OpenChannel Open(const ChannelSpec& spec, const Backends& backends) {
  OpenChannel ch;
  auto creds = grpc::InsecureChannelCredentials();
  if (spec.policy.empty()) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // connections of its own
    args.SetServiceConfigJSON(spec.config);
    ch.channel = grpc::CreateCustomChannel("ipv4:" + backends.List(), creds, args);
  } else {
    lbkit::ChannelOptions options;
    options.default_service_config = spec.config;
    grpc::Status status;
    ch.channel = lbkit::CreateChannel("static:///" + backends.List(), creds, options, &status);
    if (!status.ok()) throw std::runtime_error(spec.id + ": " + status.error_message());
  }
  ch.stub = Echo::NewStub(ch.channel);
  return ch;
}

// The label of the backend that served (or failed) a call, or -1.
int BackendOf(const grpc::Status& status, const EchoResponse& response) {
  const std::string& text = status.ok() ? response.message() : status.error_message();
  size_t at = text.rfind('b');
  if (at == std::string::npos || at + 2 != text.size()) return -1;
  int index = text[at + 1] - '0';
  return index >= 0 && index < kBackends ? index : -1;
}

// READY, and calls (failed ones included) have reached every backend.
void WaitUntilServing(OpenChannel& ch, const std::string& id) {
  const Clock::time_point deadline = Clock::now() + std::chrono::seconds(20);
  std::set<int> seen;
  while (seen.size() < kBackends) {
    if (Clock::now() >= deadline) {
      throw std::runtime_error(id + ": calls reached only " + std::to_string(seen.size()) + " of " +
                               std::to_string(kBackends) + " backends in 20s");
    }
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    context.set_wait_for_ready(true);
    EchoRequest request;
    request.set_message("ready?");
    EchoResponse response;
    grpc::Status status = ch.stub->UnaryEcho(&context, request, &response);
    int backend = BackendOf(status, response);
    if (backend >= 0) seen.insert(backend);
  }
}

// ---------------------------------------------------------------------------
// The open loop

struct Outcome {
  uint32_t latency_ns = 0;  // from the scheduled start; saturated at ~4.3 s
  int8_t backend = -1;
  bool ok = false;
  bool done = false;
};

struct LoopResult {
  std::vector<Outcome> outcomes;
  std::chrono::nanoseconds max_start_lag{0};  // how late the driver started a call
  std::string first_error;
};

class OpenLoop {
 public:
  OpenLoop(Echo::Stub* stub, int rate, std::chrono::nanoseconds duration)
      : stub_(stub),
        rate_(rate),
        calls_(static_cast<size_t>(rate * std::chrono::duration<double>(duration).count())) {
    request_.set_message("open loop");
    result_.outcomes.resize(calls_);
  }

  LoopResult Run() {
    const Clock::time_point start = Clock::now() + std::chrono::milliseconds(1);
    const std::chrono::duration<double> period(1.0 / rate_);
    for (size_t i = 0; i < calls_; ++i) {
      const Clock::time_point scheduled =
          start + std::chrono::duration_cast<Clock::duration>(period * static_cast<double>(i));
      // Pacing the load generator, not waiting for a result.
      std::this_thread::sleep_until(scheduled);
      const Clock::duration lag = Clock::now() - scheduled;
      if (lag > result_.max_start_lag) result_.max_start_lag = lag;
      Start(i, scheduled);
    }
    std::unique_lock<std::mutex> lock(mu_);
    // Every call has a deadline of 5 s, so all end well within 30 s.
    if (!cv_.wait_for(lock, std::chrono::seconds(30), [&] { return finished_ == calls_; })) {
      throw std::runtime_error("calls still running 30 s after the last was started");
    }
    return std::move(result_);
  }

 private:
  struct Call {
    grpc::ClientContext context;
    EchoResponse response;
    Clock::time_point scheduled;
    size_t index = 0;
  };

  void Start(size_t index, Clock::time_point scheduled) {
    auto* call = new Call;
    call->scheduled = scheduled;
    call->index = index;
    call->context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    stub_->async()->UnaryEcho(&call->context, &request_, &call->response,
                              [this, call](grpc::Status status) { Finish(call, status); });
  }

  void Finish(Call* call, const grpc::Status& status) {
    const int64_t ns =
        std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - call->scheduled)
            .count();
    Outcome& outcome = result_.outcomes[call->index];
    outcome.latency_ns = ns < 0 ? 0 : ns > UINT32_MAX ? UINT32_MAX : static_cast<uint32_t>(ns);
    outcome.backend = static_cast<int8_t>(BackendOf(status, call->response));
    outcome.ok = status.ok();
    outcome.done = true;
    std::string error;
    if (!status.ok()) error = std::to_string(status.error_code()) + ": " + status.error_message();
    delete call;
    std::lock_guard<std::mutex> lock(mu_);
    if (!error.empty() && result_.first_error.empty()) result_.first_error = error;
    if (++finished_ == calls_) cv_.notify_all();
  }

  Echo::Stub* const stub_;
  const int rate_;
  const size_t calls_;
  EchoRequest request_;
  LoopResult result_;
  std::mutex mu_;
  std::condition_variable cv_;
  size_t finished_ = 0;
};

// ---------------------------------------------------------------------------
// Summaries

struct Summary {
  uint64_t calls = 0;
  uint64_t failed = 0;
  std::vector<uint64_t> per_backend = std::vector<uint64_t>(kBackends, 0);
  double mean_ms = 0, p50_ms = 0, p90_ms = 0, p99_ms = 0, p999_ms = 0;
  double max_start_lag_ms = 0;
  std::string first_error;

  double Share(int backend) const {
    return calls == 0 ? 0 : static_cast<double>(per_backend[backend]) / static_cast<double>(calls);
  }
  double FailedShare() const {
    return calls == 0 ? 0 : static_cast<double>(failed) / static_cast<double>(calls);
  }
};

Summary Summarize(const std::vector<LoopResult>& rounds) {
  Summary s;
  std::vector<uint32_t> ns;
  double total_ns = 0;
  for (const LoopResult& r : rounds) {
    s.max_start_lag_ms = std::max(
        s.max_start_lag_ms, std::chrono::duration<double, std::milli>(r.max_start_lag).count());
    if (s.first_error.empty()) s.first_error = r.first_error;
    for (const Outcome& o : r.outcomes) {
      ++s.calls;
      if (!o.ok) ++s.failed;
      if (o.backend >= 0) ++s.per_backend[o.backend];
      ns.push_back(o.latency_ns);
      total_ns += o.latency_ns;
    }
  }
  if (s.calls > 0) s.mean_ms = total_ns / static_cast<double>(s.calls) / 1e6;
  s.p50_ms = PercentileUs(ns, 0.50) / 1000;
  s.p90_ms = PercentileUs(ns, 0.90) / 1000;
  s.p99_ms = PercentileUs(ns, 0.99) / 1000;
  s.p999_ms = PercentileUs(ns, 0.999) / 1000;
  return s;
}

double Ratio(double value, double baseline) { return baseline > 0 ? value / baseline : 0; }

// ---------------------------------------------------------------------------
// The run

void ShowProgress(const Flags& flags, const std::string& line) {
  if (!flags.progress) return;
  std::fprintf(stderr, "\r%-78s", line.c_str());
  std::fflush(stderr);
}

nlohmann::json RunExperiment(const Flags& flags, const std::string& experiment,
                             Backends& backends) {
  const bool slow = experiment == "slow";
  for (int i = 0; i < kBackends; ++i) {
    backends.services[i]->Configure(
        slow && i == kSlowBackend ? flags.delay : std::chrono::nanoseconds(0),
        !slow && i == kFailingBackend);
  }
  std::vector<ChannelSpec> specs;
  const std::vector<std::string> registered = lbkit::RegisteredBalancers();
  for (const ChannelSpec& spec : ChannelsFor(experiment)) {
    if (!spec.policy.empty() &&
        std::find(registered.begin(), registered.end(), spec.policy) == registered.end()) {
      std::cerr << "lbkit-bench: no policy " << spec.policy << " registered; " << spec.id
                << " left out\n";
      continue;
    }
    specs.push_back(spec);
  }
  // slow: one channel each for the whole run, warmed up once; failing: a fresh
  // channel each round, measured from its first call.
  std::vector<OpenChannel> channels(specs.size());
  if (slow) {
    for (size_t c = 0; c < specs.size(); ++c) {
      ShowProgress(flags, experiment + ": connecting and warming up " + specs[c].id);
      channels[c] = Open(specs[c], backends);
      WaitUntilServing(channels[c], specs[c].id);
      if (flags.warmup.count() > 0)
        OpenLoop(channels[c].stub.get(), flags.rate, flags.warmup).Run();
    }
  }
  std::vector<std::vector<LoopResult>> results(specs.size());
  for (int round = 0; round < flags.rounds; ++round) {
    for (size_t c = 0; c < specs.size(); ++c) {
      ShowProgress(flags, experiment + ": round " + std::to_string(round + 1) + "/" +
                              std::to_string(flags.rounds) + ", " + specs[c].id);
      if (!slow) {
        channels[c] = Open(specs[c], backends);
        WaitUntilServing(channels[c], specs[c].id);
      }
      results[c].push_back(OpenLoop(channels[c].stub.get(), flags.rate, flags.duration).Run());
      if (!slow) channels[c] = OpenChannel();
    }
  }
  if (flags.progress) std::fprintf(stderr, "\r%-78s\r", "");

  std::vector<Summary> summaries;
  for (const auto& r : results) summaries.push_back(Summarize(r));
  const Summary& base = summaries.front();  // native_round_robin
  const int watched = slow ? kSlowBackend : kFailingBackend;

  std::printf(
      "\n%s experiment: %d backends, %s; %d calls/s open loop, %s x %d rounds per "
      "channel\n",
      experiment.c_str(), kBackends,
      slow ? ("b3 slower by " + FormatDuration(flags.delay)).c_str() : "b0 fails every other call",
      flags.rate, FormatDuration(flags.duration).c_str(), flags.rounds);
  std::printf("%-27s %8s %7s %7s %7s %7s %7s %8s %7s | %7s %7s %7s\n", "channel", "calls",
              slow ? "b3 share" : "failed", "mean", "p50", "p90", "p99", "p99.9", "lag", "share/",
              "mean/", "p90/");
  std::printf("%-27s %8s %7s %7s %7s %7s %7s %8s %7s | %23s\n", "", "", "", "ms", "ms", "ms", "ms",
              "ms", "ms", "ratios to native_round_robin");
  nlohmann::json rows = nlohmann::json::array();
  for (size_t c = 0; c < specs.size(); ++c) {
    const Summary& s = summaries[c];
    const double share = slow ? s.Share(watched) : s.FailedShare();
    const double base_share = slow ? base.Share(watched) : base.FailedShare();
    std::printf("%-27s %8llu %6.1f%% %7.2f %7.2f %7.2f %7.2f %8.2f %7.2f | %7.2f %7.2f %7.2f\n",
                specs[c].id.c_str(), static_cast<unsigned long long>(s.calls), share * 100,
                s.mean_ms, s.p50_ms, s.p90_ms, s.p99_ms, s.p999_ms, s.max_start_lag_ms,
                Ratio(share, base_share), Ratio(s.mean_ms, base.mean_ms),
                Ratio(s.p90_ms, base.p90_ms));
    nlohmann::json shares = nlohmann::json::array();
    for (int b = 0; b < kBackends; ++b) shares.push_back(s.Share(b));
    nlohmann::json row = {{"channel", specs[c].id},
                          {"description", specs[c].description},
                          {"service_config", specs[c].config},
                          {"calls", s.calls},
                          {"failed", s.failed},
                          {"backend_shares", shares},
                          {"watched_share", share},
                          {"mean_ms", s.mean_ms},
                          {"p50_ms", s.p50_ms},
                          {"p90_ms", s.p90_ms},
                          {"p99_ms", s.p99_ms},
                          {"p999_ms", s.p999_ms},
                          {"max_start_lag_ms", s.max_start_lag_ms},
                          {"share_ratio", Ratio(share, base_share)},
                          {"mean_ratio", Ratio(s.mean_ms, base.mean_ms)},
                          {"p90_ratio", Ratio(s.p90_ms, base.p90_ms)}};
    if (!s.first_error.empty()) row["first_error"] = s.first_error;
    rows.push_back(row);
    // In the slow experiment every call should succeed; an error there means
    // the figures are suspect (the failing experiment fails calls on purpose).
    if (slow && s.failed > 0) {
      std::fprintf(stderr, "lbkit-bench: %s: %llu call(s) failed, first: %s\n", specs[c].id.c_str(),
                   static_cast<unsigned long long>(s.failed), s.first_error.c_str());
    }
  }
  double worst_lag = 0;
  for (const Summary& s : summaries) worst_lag = std::max(worst_lag, s.max_start_lag_ms);
  if (worst_lag > 5) {
    std::printf(
        "note: the driver started some call up to %.1f ms late (lag column): this "
        "machine did not sustain %d calls/s throughout; latency still counts from the "
        "scheduled start\n",
        worst_lag, flags.rate);
  }
  return {{"experiment", experiment}, {"channels", rows}};
}

}  // namespace

int RunSlowBackend(int argc, char** argv) {
  Flags flags;
  if (int status = ParseFlags(argc, argv, &flags); status >= 0) return status;
  Backends backends;
  nlohmann::json experiments = nlohmann::json::array();
  bool failed = false;
  for (const std::string& experiment : flags.experiments) {
    nlohmann::json result = RunExperiment(flags, experiment, backends);
    for (const auto& row : result["channels"]) {
      if (experiment == "slow" && row["failed"].get<uint64_t>() > 0) failed = true;
    }
    experiments.push_back(std::move(result));
  }
  if (!flags.json_path.empty()) {
    nlohmann::json out = {
        {"scenario", "slow-backend"},
        {"rate", flags.rate},
        {"duration_s", std::chrono::duration<double>(flags.duration).count()},
        {"rounds", flags.rounds},
        {"delay_ms", std::chrono::duration<double, std::milli>(flags.delay).count()},
        {"experiments", experiments}};
    std::ofstream(flags.json_path) << out.dump(2) << "\n";
  }
  if (failed) {
    std::cerr << "lbkit-bench: calls failed in the slow experiment; the numbers are suspect\n";
    return 1;
  }
  return 0;
}

}  // namespace lbkit_bench
