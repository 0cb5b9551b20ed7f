// lbkit-bench: lbkit's channel against gRPC C++'s own, end to end, in one
// process (GitHub issue 4).
//
// It starts --backends echo servers on 127.0.0.1 (ports the kernel picks) and
// runs each workload against four channels in alternating rounds
// (A B C D A B C D ...), so that a slow moment of a shared machine hits every
// channel alike:
//
//   lbkit_round_robin         lbkit, "static:///a,b", round_robin
//   lbkit_custom_round_robin  lbkit, the example's custom_round_robin (chooseSecond 3)
//   native_round_robin        grpc::CreateCustomChannel("ipv4:a,b"), round_robin by service config
//   native_single             grpc::CreateCustomChannel("ipv4:a"), gRPC's default (pick_first)
//   native_round_robin_2      (only with --channels) the baseline again: an A/A noise control
//
// Each channel gets connections of its own (local subchannel pools), so no two
// channels share a TCP connection. Channels wait until READY (lbkit ones until
// every subchannel is READY in Snapshot()) and until their calls reach every
// backend they should, and every workload is warmed up on every channel. For
// every workload and channel it prints calls/s, p50 and p99 latency (from
// per-call samples), process CPU time per call (medians over rounds), and
// the median over rounds of the round-by-round ratio of each to
// native_round_robin's.
//
//   lbkit-bench                                  # everything, ~4 minutes
//   lbkit-bench --workloads sync --threads 1 --duration 500ms --rounds 3
//   lbkit-bench --json results.json
//   lbkit-bench --scenario slow-backend         # tools/slow_backend.cc
//   lbkit-bench --scenario ring-hash-movement   # tools/ring_hash_movement.cc
//   lbkit-bench --scenario discovery            # tools/discovery_bench.cc
//   lbkit-bench --scenario cold-start           # tools/cold_start.cc
//
// Run with --help for every flag.
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <absl/strings/str_join.h>
#include <grpcpp/grpcpp.h>
#include <lbkit/lbkit.h>
#include <nlohmann/json.hpp>

#include "bench_util.h"
#include "cli.h"
#include "custom_round_robin.h"
#include "echo.grpc.pb.h"
#include "echo_service.h"
#include "scenarios.h"

namespace {

using Clock = std::chrono::steady_clock;
using grpc::examples::echo::Echo;
using grpc::examples::echo::EchoRequest;
using grpc::examples::echo::EchoResponse;
using lbkit_bench::AddDuration;
using lbkit_bench::AddJsonPath;
using lbkit_bench::AddNames;
using lbkit_bench::FormatDuration;
using lbkit_bench::Median;
using lbkit_bench::PercentileUs;
using lbkit_bench::ProcessCpuSeconds;
using lbkit_bench::UsageError;

constexpr const char* kRoundRobinConfig = R"({"loadBalancingConfig":[{"round_robin":{}}]})";
constexpr const char* kCustomConfig =
    R"({"loadBalancingConfig":[{"custom_round_robin":{"chooseSecond":3}}]})";
constexpr const char* kBaseline = "native_round_robin";
const std::vector<std::string> kAllWorkloads = {"sync", "async", "callback", "bidi"};
const std::vector<std::string> kDefaultChannels = {"lbkit_round_robin", "lbkit_custom_round_robin",
                                                   "native_round_robin", "native_single"};
// native_round_robin_2, a second channel identical to the baseline, is an A/A
// control: its ratios show how much of a difference this machine's noise
// alone makes. Only on request.
const std::vector<std::string> kAllChannels = {"lbkit_round_robin", "lbkit_custom_round_robin",
                                               "native_round_robin", "native_round_robin_2",
                                               "native_single"};

// ---------------------------------------------------------------------------
// Flags

struct Flags {
  int backends = 2;
  std::vector<std::string> workloads = kAllWorkloads;
  std::vector<std::string> channels = kDefaultChannels;
  std::vector<int> threads = {1, 8};
  int outstanding = 32;
  int cq_threads = 2;
  std::chrono::nanoseconds duration = std::chrono::seconds(2);
  std::chrono::nanoseconds warmup = std::chrono::milliseconds(200);
  int rounds = 5;
  int message_size = 16;
  std::string json_path;
  bool progress = true;
  bool rotate = false;  // round r starts with channel r mod n (A B C D, B C D A, ...)
};

const char kDescription[] =
    R"(Starts echo backends in this process and compares lbkit's channel with gRPC
C++'s native one, round by round (A B C D A B C D ...).

Other scenarios (each with its own --help):
  --scenario slow-backend        4 backends, one slow or failing, an open-loop
                                 load: native round_robin against lbkit's policies
  --scenario ring-hash-movement  the share of keys ring_hash moves when one of
                                 N backends goes
  --scenario discovery           endpoints in etcd, churning, under wait-for-ready
                                 calls: failed calls, etcd write to picker, CPU
  --scenario cold-start          a new channel, lbkit against native: time to the
                                 first call, to N endpoints all serving, and the
                                 threads and heap per channel and per endpoint)";

// Fills `flags`: -1 to go on, else the status to exit with (--help, a bad flag).
int ParseFlags(int argc, char** argv, Flags* flags) {
  CLI::App app(kDescription, "lbkit-bench");
  lbkit_example::AddNumber(app, "--backends", &flags->backends, 1, 64,
                           "echo servers on 127.0.0.1:0 (custom_round_robin needs >= 2)");
  AddNames(app, "--workloads", &flags->workloads, kAllWorkloads,
           "comma list of sync,async,callback,bidi (default all)");
  AddNames(app, "--channels", &flags->channels, kAllChannels,
           "comma list of lbkit_round_robin,lbkit_custom_round_robin,\n"
           "native_round_robin,native_single (default: these four; ratios need\n"
           "native_round_robin), and native_round_robin_2, a second baseline channel\n"
           "whose ratios show the machine's noise");
  lbkit_example::AddNumber(app, "--threads", &flags->threads, 1, 256,
                           "thread counts for sync and bidi, a comma list, one run each")
      ->delimiter(',');
  lbkit_example::AddNumber(app, "--outstanding", &flags->outstanding, 1, 10000,
                           "calls in flight for async and callback");
  lbkit_example::AddNumber(app, "--cq-threads", &flags->cq_threads, 1, 2,
                           "completion-queue threads for async, 1 or 2");
  AddDuration(app, "--duration", &flags->duration, /*allow_zero=*/false,
              "measured time per channel per round: 2s, 200ms, 1.5s");
  AddDuration(app, "--warmup", &flags->warmup, /*allow_zero=*/true,
              "unmeasured run per workload and channel first (0 for none)");
  lbkit_example::AddNumber(app, "--rounds", &flags->rounds, 1, 1000, "rounds");
  lbkit_example::AddNumber(app, "--message-size", &flags->message_size, 0, 4 << 20,
                           "bytes of each request message");
  app.add_flag("--rotate", flags->rotate,
               "start round r with channel r mod n (A B C D, B C D A, ...) to cancel any\n"
               "advantage of a position in the round (default: A B C D every round)");
  AddJsonPath(app, &flags->json_path);
  app.add_flag_callback(
      "--no-progress", [flags] { flags->progress = false; }, "no progress line on stderr");
  if (int status = lbkit_example::ParseCommandLine(app, argc, argv); status >= 0) return status;

  bool custom = std::find(flags->channels.begin(), flags->channels.end(),
                          "lbkit_custom_round_robin") != flags->channels.end();
  if (custom && flags->backends < 2) {
    throw UsageError("--backends " + std::to_string(flags->backends) +
                     ": lbkit_custom_round_robin needs at least 2 backends (or leave it out "
                     "with --channels)");
  }
  return -1;
}

// ---------------------------------------------------------------------------
// Measurement

// Latencies of one worker (nanoseconds, saturated at ~4.3 s) and its failures.
struct Samples {
  std::vector<uint32_t> ns;
  uint64_t completed = 0;  // every call finished, in the window or not, for CPU per call
  uint64_t errors = 0;
  std::string first_error;

  Samples() { ns.reserve(1 << 14); }
  void Add(Clock::duration latency) {
    int64_t n = std::chrono::duration_cast<std::chrono::nanoseconds>(latency).count();
    ns.push_back(n < 0 ? 0 : n > UINT32_MAX ? UINT32_MAX : static_cast<uint32_t>(n));
  }
  void Error(const grpc::Status& status) {
    if (errors++ == 0) {
      first_error = std::to_string(status.error_code()) + ": " + status.error_message();
    }
  }
};

// The measurement window, shared by a round's workers.
struct Window {
  Clock::time_point start;
  Clock::time_point end;
};

// Workers arrive (ready to go), the driver opens the window, workers start.
class Gate {
 public:
  void Arrive() {
    std::lock_guard<std::mutex> lock(mu_);
    ++arrived_;
    cv_.notify_all();
  }
  void AwaitArrivals(int n) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return arrived_ >= n; });
  }
  void Open(std::chrono::nanoseconds duration) {
    std::lock_guard<std::mutex> lock(mu_);
    window_.start = Clock::now();
    window_.end = window_.start + duration;
    open_ = true;
    cv_.notify_all();
  }
  Window Wait() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return open_; });
    return window_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int arrived_ = 0;
  bool open_ = false;
  Window window_;
};

struct RoundResult {
  uint64_t calls = 0;  // completed OK inside the window
  uint64_t errors = 0;
  std::string first_error;
  double seconds = 0;
  double calls_per_sec = 0;
  double p50_us = 0;
  double p99_us = 0;
  uint64_t completed = 0;      // calls finished while the workers ran, window or not
  double cpu_us_per_call = 0;  // CPU time of the whole process (client and backends) per call
};

RoundResult Summarize(std::vector<Samples>& workers, std::chrono::nanoseconds duration) {
  RoundResult r;
  std::vector<uint32_t> all;
  size_t total = 0;
  for (const Samples& s : workers) total += s.ns.size();
  all.reserve(total);
  for (Samples& s : workers) {
    all.insert(all.end(), s.ns.begin(), s.ns.end());
    r.errors += s.errors;
    r.completed += s.completed;
    if (r.first_error.empty()) r.first_error = s.first_error;
  }
  r.calls = all.size();
  r.seconds = std::chrono::duration<double>(duration).count();
  r.calls_per_sec = static_cast<double>(r.calls) / r.seconds;
  r.p50_us = PercentileUs(all, 0.50);
  r.p99_us = PercentileUs(all, 0.99);
  return r;
}

std::chrono::system_clock::time_point CallDeadline(std::chrono::nanoseconds duration) {
  // Generous: a deadline is only there so that a wedged call cannot hang the run.
  return std::chrono::system_clock::now() +
         std::chrono::duration_cast<std::chrono::system_clock::duration>(duration) +
         std::chrono::seconds(30);
}

// Sync unary: one blocking call after another on each thread. Not inlined, so
// that a profiler can attribute the client side of a call to it
// (tools/profile-hot-path.sh collects only below this function).
__attribute__((noinline)) void SyncWorker(Echo::Stub* stub, const EchoRequest* request,
                                          std::chrono::nanoseconds duration, Gate* gate,
                                          Samples* out) {
  gate->Arrive();
  const Window window = gate->Wait();
  EchoResponse response;
  for (;;) {
    const Clock::time_point t0 = Clock::now();
    if (t0 >= window.end) break;
    grpc::ClientContext context;
    context.set_deadline(CallDeadline(duration));
    grpc::Status status = stub->UnaryEcho(&context, *request, &response);
    const Clock::time_point t1 = Clock::now();
    ++out->completed;
    if (t1 > window.end) break;  // finished outside the window: not counted
    if (status.ok()) {
      out->Add(t1 - t0);
    } else {
      out->Error(status);
    }
  }
}

// Runs `worker` on `threads` threads, released together for one window, and
// summarizes their samples. Sync unary and bidi differ only in the worker.
template <typename Worker>
RoundResult RunThreads(Worker worker, Echo::Stub* stub, const EchoRequest& request, int threads,
                       std::chrono::nanoseconds duration) {
  Gate gate;
  std::vector<Samples> samples(static_cast<size_t>(threads));
  std::vector<std::thread> workers;
  for (int i = 0; i < threads; ++i) {
    workers.emplace_back(worker, stub, &request, duration, &gate, &samples[i]);
  }
  gate.AwaitArrivals(threads);
  gate.Open(duration);
  for (std::thread& t : workers) t.join();
  return Summarize(samples, duration);
}

RoundResult RunSync(Echo::Stub* stub, const EchoRequest& request, int threads,
                    std::chrono::nanoseconds duration) {
  return RunThreads(SyncWorker, stub, request, threads, duration);
}

// Async unary: `slots` calls in flight on one completion queue, each restarted
// as soon as it completes, until the window closes.
struct AsyncCall {
  // Declared before `reader`, so destroyed after it: the reader lives in the
  // call's arena, which the context releases.
  std::unique_ptr<grpc::ClientContext> context;
  std::unique_ptr<grpc::ClientAsyncResponseReader<EchoResponse>> reader;
  EchoResponse response;
  grpc::Status status;
  Clock::time_point t0;
};

void AsyncWorker(Echo::Stub* stub, const EchoRequest* request, int slots,
                 std::chrono::nanoseconds duration, Gate* gate, Samples* out) {
  grpc::CompletionQueue cq;
  std::vector<AsyncCall> calls(static_cast<size_t>(slots));
  auto start = [&](AsyncCall& call) {
    call.reader.reset();  // before its context: it lives in the old call's arena
    call.context = std::make_unique<grpc::ClientContext>();
    call.context->set_deadline(CallDeadline(duration));
    call.t0 = Clock::now();
    call.reader = stub->AsyncUnaryEcho(call.context.get(), *request, &cq);
    call.reader->Finish(&call.response, &call.status, &call);
  };
  gate->Arrive();
  const Window window = gate->Wait();
  for (AsyncCall& call : calls) start(call);
  int active = slots;
  void* tag = nullptr;
  bool ok = false;
  while (active > 0 && cq.Next(&tag, &ok)) {
    auto* call = static_cast<AsyncCall*>(tag);
    const Clock::time_point t1 = Clock::now();
    ++out->completed;
    if (t1 <= window.end) {
      if (ok && call->status.ok()) {
        out->Add(t1 - call->t0);
      } else {
        out->Error(ok ? call->status : grpc::Status(grpc::StatusCode::UNKNOWN, "cq: not ok"));
      }
    }
    if (t1 < window.end) {
      start(*call);
    } else {
      --active;
    }
  }
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
  for (AsyncCall& call : calls) call.reader.reset();
}

RoundResult RunAsync(Echo::Stub* stub, const EchoRequest& request, int outstanding, int cq_threads,
                     std::chrono::nanoseconds duration) {
  const int threads = std::min(outstanding, cq_threads);
  Gate gate;
  std::vector<Samples> samples(static_cast<size_t>(threads));
  std::vector<std::thread> workers;
  for (int i = 0; i < threads; ++i) {
    int slots = outstanding / threads + (i < outstanding % threads ? 1 : 0);
    workers.emplace_back(AsyncWorker, stub, &request, slots, duration, &gate, &samples[i]);
  }
  gate.AwaitArrivals(threads);
  gate.Open(duration);
  for (std::thread& t : workers) t.join();
  return Summarize(samples, duration);
}

// Callback unary: `outstanding` chains of calls; each completion starts the
// next call of its chain from gRPC's callback thread.
struct CallbackRun {
  struct Slot {
    // The context of the call before: released one call later, never inside
    // the completion of its own call.
    std::unique_ptr<grpc::ClientContext> previous;
    std::unique_ptr<grpc::ClientContext> context;
    EchoResponse response;
    Clock::time_point t0;
    Samples samples;
  };
  Echo::Stub* stub = nullptr;
  EchoRequest request;
  std::chrono::nanoseconds duration{};
  Window window;
  std::vector<Slot> slots;
  std::mutex mu;
  std::condition_variable cv;
  int active = 0;
};

void StartCallback(const std::shared_ptr<CallbackRun>& run, size_t index);

// A call of chain `index` completed (on a gRPC thread): record it, then start
// the next one, or end the chain once the window has closed.
void OnCallbackDone(const std::shared_ptr<CallbackRun>& run, size_t index,
                    const grpc::Status& status) {
  CallbackRun::Slot& slot = run->slots[index];
  const Clock::time_point t1 = Clock::now();
  ++slot.samples.completed;
  if (t1 <= run->window.end) {
    if (status.ok()) {
      slot.samples.Add(t1 - slot.t0);
    } else {
      slot.samples.Error(status);
    }
  }
  if (t1 < run->window.end) {
    StartCallback(run, index);
    return;
  }
  std::lock_guard<std::mutex> lock(run->mu);
  if (--run->active == 0) run->cv.notify_all();
}

void StartCallback(const std::shared_ptr<CallbackRun>& run, size_t index) {
  CallbackRun::Slot& slot = run->slots[index];
  slot.previous = std::move(slot.context);
  slot.context = std::make_unique<grpc::ClientContext>();
  slot.context->set_deadline(CallDeadline(run->duration));
  slot.t0 = Clock::now();
  run->stub->async()->UnaryEcho(
      slot.context.get(), &run->request, &slot.response,
      [run, index](grpc::Status status) { OnCallbackDone(run, index, status); });
}

RoundResult RunCallback(Echo::Stub* stub, const EchoRequest& request, int outstanding,
                        std::chrono::nanoseconds duration) {
  auto run = std::make_shared<CallbackRun>();
  run->stub = stub;
  run->request = request;
  run->duration = duration;
  run->slots.resize(static_cast<size_t>(outstanding));
  run->active = outstanding;
  run->window.start = Clock::now();
  run->window.end = run->window.start + duration;
  for (size_t i = 0; i < run->slots.size(); ++i) StartCallback(run, i);
  {
    std::unique_lock<std::mutex> lock(run->mu);
    run->cv.wait(lock, [&] { return run->active == 0; });
  }
  std::vector<Samples> samples;
  for (CallbackRun::Slot& slot : run->slots) samples.push_back(std::move(slot.samples));
  return Summarize(samples, duration);
}

// Bidi: one stream per thread, opened before the window; ping-pong of one
// message each way, the latency of each exchange recorded.
void BidiWorker(Echo::Stub* stub, const EchoRequest* request, std::chrono::nanoseconds duration,
                Gate* gate, Samples* out) {
  grpc::ClientContext context;
  context.set_deadline(CallDeadline(duration));
  auto stream = stub->BidirectionalStreamingEcho(&context);
  EchoResponse response;
  bool ok = stream->Write(*request) && stream->Read(&response);  // opens it
  gate->Arrive();
  const Window window = gate->Wait();
  while (ok) {
    const Clock::time_point t0 = Clock::now();
    if (t0 >= window.end) break;
    ok = stream->Write(*request) && stream->Read(&response);
    const Clock::time_point t1 = Clock::now();
    if (ok) ++out->completed;
    if (t1 > window.end) break;
    if (ok) out->Add(t1 - t0);
  }
  stream->WritesDone();
  while (stream->Read(&response)) {
  }
  grpc::Status status = stream->Finish();
  if (!status.ok()) out->Error(status);
}

RoundResult RunBidi(Echo::Stub* stub, const EchoRequest& request, int threads,
                    std::chrono::nanoseconds duration) {
  return RunThreads(BidiWorker, stub, request, threads, duration);
}

// ---------------------------------------------------------------------------
// Channels and backends

struct Backend {
  std::unique_ptr<lbkit_example::EchoService> service;
  std::unique_ptr<grpc::Server> server;
  std::string address;  // 127.0.0.1:port
};

struct BenchChannel {
  std::string id;
  std::string description;
  std::shared_ptr<grpc::ChannelInterface> channel;
  std::shared_ptr<lbkit::Channel> lbkit;  // null for native channels
  std::unique_ptr<Echo::Stub> stub;
  size_t expected_subchannels = 0;  // lbkit: subchannels that must be READY
  size_t expected_backends = 0;     // distinct backends its calls must reach
};

grpc::ChannelArguments NativeArgs(const std::string& service_config) {
  grpc::ChannelArguments args;
  // Connections of its own, as every lbkit subchannel has.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  if (!service_config.empty()) args.SetServiceConfigJSON(service_config);
  return args;
}

std::unique_ptr<BenchChannel> MakeChannel(const std::string& id,
                                          const std::vector<std::string>& addresses) {
  auto ch = std::make_unique<BenchChannel>();
  ch->id = id;
  const std::string list = absl::StrJoin(addresses, ",");
  auto creds = grpc::InsecureChannelCredentials();
  if (id == "lbkit_round_robin" || id == "lbkit_custom_round_robin") {
    bool custom = id == "lbkit_custom_round_robin";
    lbkit::ChannelOptions options;
    options.default_service_config = custom ? kCustomConfig : kRoundRobinConfig;
    grpc::Status status;
    ch->lbkit = lbkit::CreateChannel("static:///" + list, creds, options, &status);
    if (!status.ok()) {
      throw std::runtime_error("lbkit::CreateChannel for " + id + ": " + status.error_message());
    }
    ch->channel = ch->lbkit;
    ch->description = std::string("lbkit, ") + (custom ? "custom_round_robin" : "round_robin");
    ch->expected_subchannels = addresses.size();
    ch->expected_backends = custom ? 2 : addresses.size();
  } else if (id == "native_round_robin" || id == "native_round_robin_2") {
    std::string target = "ipv4:" + list;
    ch->channel = grpc::CreateCustomChannel(target, creds, NativeArgs(kRoundRobinConfig));
    ch->description =
        id == "native_round_robin" ? "gRPC, round_robin" : "gRPC, round_robin (A/A control)";
    ch->expected_backends = addresses.size();
  } else {
    ch->channel =
        grpc::CreateCustomChannel("ipv4:" + addresses.front(), creds, NativeArgs(std::string()));
    ch->description = "gRPC, one address";
    ch->expected_backends = 1;
  }
  ch->stub = Echo::NewStub(ch->channel);
  return ch;
}

// READY; for lbkit also every subchannel READY in Snapshot(); and calls reach
// as many distinct backends as the policy should use.
bool WaitUntilReady(BenchChannel& ch, std::chrono::seconds timeout, std::string* why) {
  const Clock::time_point deadline = Clock::now() + timeout;
  for (;;) {
    bool ready = ch.channel->GetState(/*try_to_connect=*/true) == GRPC_CHANNEL_READY;
    if (ready && ch.lbkit != nullptr) {
      lbkit::ChannelSnapshot snapshot = ch.lbkit->Snapshot();
      size_t n_ready = 0;
      for (const auto& sc : snapshot.subchannels) {
        if (sc.state == lbkit::ConnectivityState::kReady) ++n_ready;
      }
      ready = n_ready == ch.expected_subchannels &&
              snapshot.subchannels.size() == ch.expected_subchannels;
      if (!ready) {
        *why = "lbkit snapshot: " + std::to_string(n_ready) + " of " +
               std::to_string(ch.expected_subchannels) + " subchannels READY" +
               (snapshot.last_error.empty() ? "" : "; " + snapshot.last_error);
      }
    } else if (!ready) {
      *why = "channel not READY";
    }
    if (ready) break;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::set<std::string> seen;
  EchoRequest request;
  request.set_message("ready?");
  while (seen.size() < ch.expected_backends) {
    if (Clock::now() >= deadline) {
      *why = "calls reached " + std::to_string(seen.size()) + " of " +
             std::to_string(ch.expected_backends) + " backends";
      return false;
    }
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    EchoResponse response;
    grpc::Status status = ch.stub->UnaryEcho(&context, request, &response);
    if (!status.ok()) {
      *why = "call failed: " + status.error_message();
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      continue;
    }
    seen.insert(response.message());  // "ready? (from 127.0.0.1:port)"
  }
  return true;
}

// ---------------------------------------------------------------------------
// The run

struct Case {
  std::string workload;
  int threads = 0;      // sync, bidi
  int outstanding = 0;  // async, callback
  int cq_threads = 0;   // async
  std::string label;
};

std::vector<Case> MakeCases(const Flags& flags) {
  std::vector<Case> cases;
  for (const std::string& w : flags.workloads) {
    if (w == "sync" || w == "bidi") {
      for (int t : flags.threads) {
        Case c;
        c.workload = w;
        c.threads = t;
        c.label = w + " t=" + std::to_string(t);
        cases.push_back(c);
      }
    } else {
      Case c;
      c.workload = w;
      c.outstanding = flags.outstanding;
      c.label = w + " n=" + std::to_string(flags.outstanding);
      if (w == "async") {
        c.cq_threads = std::min(flags.cq_threads, flags.outstanding);
        c.label += " cq=" + std::to_string(c.cq_threads);
      }
      cases.push_back(c);
    }
  }
  return cases;
}

RoundResult RunCaseOnce(const Case& c, BenchChannel& ch, const EchoRequest& request,
                        std::chrono::nanoseconds duration) {
  if (c.workload == "sync") return RunSync(ch.stub.get(), request, c.threads, duration);
  if (c.workload == "async") {
    return RunAsync(ch.stub.get(), request, c.outstanding, c.cq_threads, duration);
  }
  if (c.workload == "callback") {
    return RunCallback(ch.stub.get(), request, c.outstanding, duration);
  }
  return RunBidi(ch.stub.get(), request, c.threads, duration);
}

// One run, with the CPU it cost per call: on a shared machine CPU time per
// call moves much less than throughput does when a neighbour steals cycles.
RoundResult RunCase(const Case& c, BenchChannel& ch, const EchoRequest& request,
                    std::chrono::nanoseconds duration) {
  const double cpu0 = ProcessCpuSeconds();
  RoundResult r = RunCaseOnce(c, ch, request, duration);
  const double cpu1 = ProcessCpuSeconds();
  if (r.completed > 0) r.cpu_us_per_call = (cpu1 - cpu0) * 1e6 / static_cast<double>(r.completed);
  return r;
}

// One progress line on stderr, rewritten in place.
class Progress {
 public:
  explicit Progress(bool enabled) : enabled_(enabled) {}
  void Show(const std::string& line) {
    if (!enabled_) return;
    std::string padded = line;
    if (padded.size() < width_) padded.append(width_ - padded.size(), ' ');
    width_ = line.size();
    std::fprintf(stderr, "\r%s", padded.c_str());
    std::fflush(stderr);
  }
  void Clear() {
    if (!enabled_ || width_ == 0) return;
    std::fprintf(stderr, "\r%s\r", std::string(width_, ' ').c_str());
    std::fflush(stderr);
    width_ = 0;
  }

 private:
  bool enabled_;
  size_t width_ = 0;
};

std::string FormatSeconds(double seconds) {
  long s = static_cast<long>(seconds + 0.5);
  char buf[32];
  if (s >= 60) {
    std::snprintf(buf, sizeof buf, "%ldm%02lds", s / 60, s % 60);
  } else {
    std::snprintf(buf, sizeof buf, "%lds", s);
  }
  return buf;
}

struct ChannelSeries {
  std::vector<RoundResult> rounds;
  std::vector<double> throughput_ratio;  // vs the baseline, per round
  std::vector<double> p99_ratio;
  std::vector<double> cpu_ratio;  // CPU per call vs the baseline's
};

nlohmann::json RoundJson(const RoundResult& r) {
  nlohmann::json j = {{"calls", r.calls},         {"errors", r.errors},
                      {"seconds", r.seconds},     {"calls_per_sec", r.calls_per_sec},
                      {"p50_us", r.p50_us},       {"p99_us", r.p99_us},
                      {"completed", r.completed}, {"cpu_us_per_call", r.cpu_us_per_call}};
  if (!r.first_error.empty()) j["first_error"] = r.first_error;
  return j;
}

int Run(const Flags& flags) {
  if (grpc::Status registered = customlb::RegisterCustomRoundRobin(); !registered.ok()) {
    std::fprintf(stderr, "lbkit-bench: %s\n", registered.error_message().c_str());
    return 1;
  }

  // Backends.
  std::vector<Backend> backends;
  std::vector<std::string> addresses;
  for (int i = 0; i < flags.backends; ++i) {
    Backend b;
    b.service = std::make_unique<lbkit_example::EchoService>("");
    int port = 0;
    std::string error;
    b.server = lbkit_example::StartEchoServer("127.0.0.1:0", b.service.get(), &port, &error);
    if (b.server == nullptr) {
      std::cerr << "lbkit-bench: cannot start echo backend: " << error << "\n";
      return 1;
    }
    b.address = "127.0.0.1:" + std::to_string(port);
    b.service->set_label(b.address);
    addresses.push_back(b.address);
    backends.push_back(std::move(b));
  }

  // Channels.
  Progress progress(flags.progress);
  std::vector<std::unique_ptr<BenchChannel>> channels;
  for (const std::string& id : flags.channels) {
    channels.push_back(MakeChannel(id, addresses));
  }
  for (auto& ch : channels) {
    progress.Show("lbkit-bench: connecting " + ch->id + " ...");
    std::string why;
    if (!WaitUntilReady(*ch, std::chrono::seconds(20), &why)) {
      progress.Clear();
      std::cerr << "lbkit-bench: channel " << ch->id << " did not become ready in 20s: " << why
                << "\n";
      return 1;
    }
  }

  EchoRequest request;
  request.set_message(std::string(static_cast<size_t>(flags.message_size), 'x'));

  const std::vector<Case> cases = MakeCases(flags);
  const double step_seconds = std::chrono::duration<double>(flags.duration).count();
  const double warmup_seconds = std::chrono::duration<double>(flags.warmup).count();
  const double total_seconds = static_cast<double>(cases.size() * channels.size()) *
                               (warmup_seconds + step_seconds * flags.rounds);
  double planned_done = 0;
  const bool has_baseline =
      std::find(flags.channels.begin(), flags.channels.end(), kBaseline) != flags.channels.end();

  std::vector<std::map<std::string, ChannelSeries>> results(cases.size());
  uint64_t total_errors = 0;
  for (size_t ci = 0; ci < cases.size(); ++ci) {
    const Case& c = cases[ci];
    std::string prefix = "lbkit-bench [" + std::to_string(ci + 1) + "/" +
                         std::to_string(cases.size()) + " " + c.label + "] ";
    auto eta = [&] { return "  ETA " + FormatSeconds(total_seconds - planned_done); };
    if (flags.warmup.count() > 0) {
      for (auto& ch : channels) {
        progress.Show(prefix + "warm-up " + ch->id + eta());
        RunCase(c, *ch, request, flags.warmup);
        planned_done += warmup_seconds;
      }
    }
    for (int round = 0; round < flags.rounds; ++round) {
      for (size_t k = 0; k < channels.size(); ++k) {
        auto& ch = channels[flags.rotate ? (k + static_cast<size_t>(round)) % channels.size() : k];
        progress.Show(prefix + "round " + std::to_string(round + 1) + "/" +
                      std::to_string(flags.rounds) + " " + ch->id + eta());
        RoundResult r = RunCase(c, *ch, request, flags.duration);
        planned_done += step_seconds;
        if (r.errors > 0) {
          total_errors += r.errors;
          progress.Clear();
          std::cerr << "lbkit-bench: " << c.label << " " << ch->id << ": " << r.errors
                    << " failed call(s), first: " << r.first_error << "\n";
        }
        results[ci][ch->id].rounds.push_back(r);
      }
      if (has_baseline) {
        const RoundResult& base = results[ci][kBaseline].rounds.back();
        for (auto& ch : channels) {
          ChannelSeries& s = results[ci][ch->id];
          const RoundResult& r = s.rounds.back();
          if (base.calls_per_sec > 0)
            s.throughput_ratio.push_back(r.calls_per_sec / base.calls_per_sec);
          if (base.p99_us > 0) s.p99_ratio.push_back(r.p99_us / base.p99_us);
          if (base.cpu_us_per_call > 0) {
            s.cpu_ratio.push_back(r.cpu_us_per_call / base.cpu_us_per_call);
          }
        }
      }
    }
  }
  progress.Clear();

  // Report.
  nlohmann::json json;
  json["tool"] = "lbkit-bench";
  json["grpc_version"] = grpc::Version();
  json["hardware_threads"] = std::thread::hardware_concurrency();
  {
    std::time_t now = std::time(nullptr);
    char buf[64];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
    json["time"] = buf;
  }
  json["config"] = {
      {"backends", flags.backends},
      {"workloads", flags.workloads},
      {"channels", flags.channels},
      {"threads", flags.threads},
      {"outstanding", flags.outstanding},
      {"cq_threads", flags.cq_threads},
      {"duration_ms", std::chrono::duration<double, std::milli>(flags.duration).count()},
      {"warmup_ms", std::chrono::duration<double, std::milli>(flags.warmup).count()},
      {"rounds", flags.rounds},
      {"message_size", flags.message_size},
      {"baseline", kBaseline},
      {"order", flags.rotate ? "rotated" : "fixed"},
  };
  json["results"] = nlohmann::json::array();

  std::printf(
      "lbkit-bench: %d backend(s), %d round(s) of %s per channel (warm-up %s), gRPC %s, "
      "%u hardware threads\n",
      flags.backends, flags.rounds, FormatDuration(flags.duration).c_str(),
      FormatDuration(flags.warmup).c_str(), grpc::Version().c_str(),
      std::thread::hardware_concurrency());
  std::printf(
      "calls/s, p50, p99, cpu/call (process CPU us per call): medians over rounds;\n"
      "x: median of the round-by-round ratios to %s\n\n",
      kBaseline);
  std::printf("%-16s %-25s %9s %8s %8s %9s %10s %7s %7s\n", "workload", "channel", "calls/s",
              "p50 us", "p99 us", "cpu/call", "calls/s x", "p99 x", "cpu x");
  for (size_t ci = 0; ci < cases.size(); ++ci) {
    const Case& c = cases[ci];
    nlohmann::json entry = {{"workload", c.workload}, {"label", c.label}};
    if (c.threads > 0) entry["threads"] = c.threads;
    if (c.outstanding > 0) entry["outstanding"] = c.outstanding;
    if (c.cq_threads > 0) entry["cq_threads"] = c.cq_threads;
    entry["channels"] = nlohmann::json::object();
    for (auto& ch : channels) {
      const ChannelSeries& s = results[ci][ch->id];
      std::vector<double> cps, p50, p99, cpu;
      for (const RoundResult& r : s.rounds) {
        cps.push_back(r.calls_per_sec);
        p50.push_back(r.p50_us);
        p99.push_back(r.p99_us);
        cpu.push_back(r.cpu_us_per_call);
      }
      nlohmann::json cj = {{"description", ch->description},
                           {"calls_per_sec", Median(cps)},
                           {"p50_us", Median(p50)},
                           {"p99_us", Median(p99)},
                           {"cpu_us_per_call", Median(cpu)}};
      char tr[32] = "-";
      char pr[32] = "-";
      char cr[32] = "-";
      if (!s.throughput_ratio.empty()) {
        cj["throughput_ratio"] = Median(s.throughput_ratio);
        cj["throughput_ratios"] = s.throughput_ratio;
        std::snprintf(tr, sizeof tr, "%.3f", Median(s.throughput_ratio));
      } else {
        cj["throughput_ratio"] = nullptr;
      }
      if (!s.p99_ratio.empty()) {
        cj["p99_ratio"] = Median(s.p99_ratio);
        cj["p99_ratios"] = s.p99_ratio;
        std::snprintf(pr, sizeof pr, "%.3f", Median(s.p99_ratio));
      } else {
        cj["p99_ratio"] = nullptr;
      }
      if (!s.cpu_ratio.empty()) {
        cj["cpu_ratio"] = Median(s.cpu_ratio);
        cj["cpu_ratios"] = s.cpu_ratio;
        std::snprintf(cr, sizeof cr, "%.3f", Median(s.cpu_ratio));
      } else {
        cj["cpu_ratio"] = nullptr;
      }
      cj["rounds"] = nlohmann::json::array();
      for (const RoundResult& r : s.rounds) cj["rounds"].push_back(RoundJson(r));
      entry["channels"][ch->id] = cj;
      std::printf("%-16s %-25s %9.0f %8.1f %8.1f %9.1f %10s %7s %7s\n", c.label.c_str(),
                  ch->id.c_str(), Median(cps), Median(p50), Median(p99), Median(cpu), tr, pr, cr);
    }
    json["results"].push_back(entry);
  }
  json["failed_calls"] = total_errors;
  std::fflush(stdout);

  if (!flags.json_path.empty()) {
    std::ofstream out(flags.json_path);
    out << json.dump(2) << "\n";
    out.close();
    if (!out) {
      std::cerr << "lbkit-bench: cannot write " << flags.json_path << "\n";
      return 1;
    }
  }

  channels.clear();
  for (Backend& b : backends) {
    b.server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
    b.server->Wait();
  }
  if (total_errors > 0) {
    std::cerr << "lbkit-bench: " << total_errors << " call(s) failed; the numbers are suspect\n";
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 2 && std::string(argv[1]).rfind("--scenario", 0) == 0) {
    return lbkit_bench::RunScenario(argc, argv);
  }
  Flags flags;
  try {
    if (int status = ParseFlags(argc, argv, &flags); status >= 0) return status;
  } catch (const UsageError& e) {
    std::cerr << "lbkit-bench: " << e.what() << "\n(see lbkit-bench --help)\n";
    return 2;
  }
  try {
    return Run(flags);
  } catch (const std::exception& e) {
    std::cerr << "lbkit-bench: " << e.what() << "\n";
    return 1;
  }
}
