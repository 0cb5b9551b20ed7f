// lbkit-bench --scenario discovery: endpoints found through etcd, churning,
// while callers make wait-for-ready calls (GitHub issue 10;
// docs/performance.md).
//
// One process holds everything but etcd: an etcd member on loopback
// (tests/common/etcd_cluster.h, in a temporary directory), one gRPC server
// listening on --endpoints plus the churn's worth of extra loopback ports
// (each port a real listener, so each registered address is its own
// backend), an lbkit channel "etcd://.../bench" with round_robin, and
// --threads callers making wait-for-ready unary calls back to back.
//
// A writer keeps --endpoints keys registered and replaces --churn percent of
// them per second (in ten steps a second: delete some registered keys, put as
// many unregistered ones). What is measured:
//   - failed calls (the target: none);
//   - for each write, the time until the channel's picker reflects it: for a
//     delete, the first picker published after the resolver update that no
//     longer lists the address; for a put, the first picker published after
//     the new endpoint's connection is READY (so it includes connecting);
//   - CPU per second of lbkit's own threads, which do all of discovery's
//     work in the client: lbkit-io (the one I/O thread of the process: the
//     etcd resolver's calls and parsing, connectivity watching, the relay of
//     any call that had to wait, and a policy's handling of a connectivity
//     report when the channel's control plane is idle) and the lbkit-control
//     pool (the channel's control plane applying each update: the policy, new
//     subchannels, pickers), each and together; the process's too. Since
//     issue 12 the two no longer split as "resolver" and "channel", so only
//     their sum is discovery's cost. lbkit-io does other work too (the
//     calls' own connectivity and relaying, and whatever I/O gRPC's poller
//     hands a thread waiting in a completion queue), so both runs report
//     it: the baseline shows that share without the churn;
//   - beside it a baseline run with the same endpoints in a static target and
//     no churn (same callers, same servers), for the calls/s ratio.
// The observation is a policy, "lbkit_bench_observer", wrapping round_robin:
// it watches the resolver updates, the subchannels' states and the child's
// picker publications on the channel's control plane (its work serializer),
// as any parent policy can.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include <absl/strings/str_join.h>
#include <grpcpp/grpcpp.h>
#include <lbkit/lbkit.h>
#include <nlohmann/json.hpp>

#include "bench_util.h"
#include "cli.h"
#include "common/etcd_cluster.h"
#include "discovery/etcd_common.h"
#include "echo.grpc.pb.h"
#include "echo_service.h"
#include "etcd/rpc.grpc.pb.h"
#include "scenarios.h"

namespace lbkit_bench {
namespace {

using Clock = std::chrono::steady_clock;
using grpc::examples::echo::Echo;
using grpc::examples::echo::EchoRequest;
using grpc::examples::echo::EchoResponse;

constexpr char kService[] = "bench";
constexpr char kObserver[] = "lbkit_bench_observer";

struct Flags {
  int endpoints = 1000;
  int churn_percent = 10;  // of --endpoints, per second
  std::chrono::nanoseconds duration = std::chrono::seconds(20);
  int threads = 8;
  bool baseline = true;
  std::string json_path;
};

// Fills `flags` from argv[3..) (argv[1..2] name the scenario): -1 to go on,
// else the status to exit with (--help, a bad flag).
int ParseFlags(int argc, char** argv, Flags* flags) {
  CLI::App app(R"(Starts an etcd member on loopback (etcd-server must be installed), registers
--endpoints real loopback listeners under one service, and runs --threads
callers making wait-for-ready calls through an lbkit channel on
etcd://.../bench with round_robin, while a writer replaces --churn percent of
the registrations per second. Prints failed calls, the time from each etcd
write until the channel's policy has it and until its picker reflects it
(p50/p90/p99/max, beside etcd's own acknowledgement), the CPU of lbkit's
threads that do discovery's work (lbkit-io and the lbkit-control pool), and
the calls/s and the same CPU beside a static-target baseline without churn.)",
               "lbkit-bench --scenario discovery");
  lbkit_example::AddNumber(app, "--endpoints", &flags->endpoints, 2, 5000,
                           "registered endpoints, 2..5000");
  lbkit_example::AddNumber(app, "--churn", &flags->churn_percent, 0, 100,
                           "percent of them replaced per second, 0..100");
  AddDuration(app, "--duration", &flags->duration, /*allow_zero=*/false,
              "measured time per run, e.g. 20s");
  lbkit_example::AddNumber(app, "--threads", &flags->threads, 1, 64, "caller threads, 1..64");
  app.add_flag_callback(
      "--no-baseline", [flags] { flags->baseline = false; }, "skip the static-target run");
  AddJsonPath(app, &flags->json_path);
  return lbkit_example::ParseCommandLine(app, argc - 2, argv + 2);
}

// ---------------------------------------------------------------------------
// From an etcd write to the picker: the writer notes each write, the
// observer policy (on the channel's control plane) notes when it shows.

class Tracker {
 public:
  // Before writing: the address is being added (or removed) now.
  void Wrote(const std::string& address, bool add) {
    std::lock_guard<std::mutex> lock(mu_);
    Pending& pending = pending_[address];
    pending = Pending{Clock::now(), add, false, false};
  }
  // The resolver update reaching the policy lists `addresses`.
  void ResolverUpdate(const std::unordered_set<std::string>& addresses) {
    std::lock_guard<std::mutex> lock(mu_);
    const Clock::time_point now = Clock::now();
    for (auto& [address, pending] : pending_) {
      const bool listed = addresses.count(address) != 0;
      if (!pending.delivered && listed == pending.add) {
        pending.delivered = true;
        (pending.add ? add_delivered_ : remove_delivered_).push_back(Since(pending.written, now));
      }
      if (!pending.add && !listed) pending.seen = true;
    }
  }
  // A subchannel for `address` became READY.
  void Ready(const std::string& address) {
    std::lock_guard<std::mutex> lock(mu_);
    auto found = pending_.find(address);
    if (found != pending_.end() && found->second.add) found->second.seen = true;
  }
  // The policy published a picker: every seen change is reflected now.
  void Published() {
    const Clock::time_point now = Clock::now();
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = pending_.begin(); it != pending_.end();) {
      if (!it->second.seen) {
        ++it;
        continue;
      }
      (it->second.add ? add_latency_ : remove_latency_).push_back(Since(it->second.written, now));
      it = pending_.erase(it);
    }
  }
  // Forgets the writes so far (the initial registration is not churn).
  void Reset() {
    std::lock_guard<std::mutex> lock(mu_);
    pending_.clear();
    add_latency_.clear();
    remove_latency_.clear();
    add_delivered_.clear();
    remove_delivered_.clear();
  }
  // From each write until the picker reflected it, and until the policy got
  // the resolver update with it; writes not reflected yet.
  struct Latencies {
    std::vector<uint32_t> put_to_picker, delete_to_picker, put_to_policy, delete_to_policy;
    size_t unreflected = 0;
  };
  Latencies Take() {
    std::lock_guard<std::mutex> lock(mu_);
    return {add_latency_, remove_latency_, add_delivered_, remove_delivered_, pending_.size()};
  }

  // Nanoseconds, saturated at ~4.3 s.
  static uint32_t Since(Clock::time_point from, Clock::time_point to) {
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(to - from).count();
    return static_cast<uint32_t>(std::clamp<int64_t>(ns, 0, std::numeric_limits<uint32_t>::max()));
  }

 private:
  struct Pending {
    Clock::time_point written;
    bool add = false;
    bool seen = false;       // the change is there: a READY connection, or gone from the list
    bool delivered = false;  // the policy got a resolver update with the change
  };
  std::mutex mu_;
  std::unordered_map<std::string, Pending> pending_;
  std::vector<uint32_t> add_latency_;
  std::vector<uint32_t> remove_latency_;
  std::vector<uint32_t> add_delivered_;
  std::vector<uint32_t> remove_delivered_;
};

// The run being measured: set by the main thread, read by the observer on
// the channel's control plane (which may still run briefly after the run
// ends, hence a shared owner).
std::shared_ptr<Tracker> current_tracker;
std::shared_ptr<Tracker> CurrentTracker() { return std::atomic_load(&current_tracker); }

// Forwards to the channel's helper, listening in on subchannel states.
class ObservingHelper : public lbkit::Helper {
 public:
  explicit ObservingHelper(lbkit::Helper* parent) : parent_(parent) {}
  std::shared_ptr<lbkit::Subchannel> CreateSubchannel(
      const std::string& address, lbkit::SubchannelStateListener listener) override {
    return parent_->CreateSubchannel(
        address, [address, listener = std::move(listener)](lbkit::ConnectivityState state,
                                                           const grpc::Status& status) {
          if (state == lbkit::ConnectivityState::kReady) {
            if (auto tracker = CurrentTracker()) tracker->Ready(address);
          }
          listener(state, status);
        });
  }
  void UpdateState(lbkit::BalancerState state) override { parent_->UpdateState(std::move(state)); }
  void RequestReresolution() override { parent_->RequestReresolution(); }
  std::unique_ptr<lbkit::Timer> StartTimer(std::chrono::milliseconds delay,
                                           std::function<void()> fn) override {
    return parent_->StartTimer(delay, std::move(fn));
  }
  void Post(std::function<void()> fn) override { parent_->Post(std::move(fn)); }
  const std::string& target() const override { return parent_->target(); }
  std::chrono::steady_clock::time_point Now() const override { return parent_->Now(); }

 private:
  lbkit::Helper* const parent_;
};

struct ObserverConfig : lbkit::BalancerConfig {
  std::shared_ptr<const lbkit::BalancerConfig> child;
};

class Observer : public lbkit::Balancer {
 public:
  explicit Observer(lbkit::Helper* helper) : helper_(helper), observing_(helper) {
    grpc::Status status;
    child_ = lbkit::ChildBalancer::Create(
        &observing_, "round_robin",
        [this](const lbkit::BalancerState& state) {
          if (auto tracker = CurrentTracker()) tracker->Published();
          helper_->UpdateState(state);
        },
        &status);
    if (child_ == nullptr) throw std::runtime_error("round_robin: " + status.error_message());
  }
  grpc::Status UpdateResolverState(lbkit::BalancerUpdate update) override {
    if (auto tracker = CurrentTracker()) {
      std::unordered_set<std::string> addresses;
      for (const lbkit::Endpoint& endpoint : update.endpoints) {
        addresses.insert(endpoint.addresses.begin(), endpoint.addresses.end());
      }
      tracker->ResolverUpdate(addresses);
    }
    update.config = static_cast<const ObserverConfig&>(*update.config).child;
    return child_->UpdateResolverState(std::move(update));
  }
  void ResolverError(const grpc::Status& status) override { child_->ResolverError(status); }
  void ExitIdle() override { child_->ExitIdle(); }
  void ResetBackoff() override { child_->ResetBackoff(); }

 private:
  lbkit::Helper* const helper_;
  ObservingHelper observing_;
  std::unique_ptr<lbkit::ChildBalancer> child_;
};

class ObserverBuilder : public lbkit::BalancerBuilder {
 public:
  std::string name() const override { return kObserver; }
  grpc::Status ParseConfig(const nlohmann::json&,
                           std::shared_ptr<const lbkit::BalancerConfig>* config) const override {
    auto parsed = std::make_shared<ObserverConfig>();
    grpc::Status status =
        lbkit::FindBalancer("round_robin")->ParseConfig(nlohmann::json::object(), &parsed->child);
    if (status.ok()) *config = std::move(parsed);
    return status;
  }
  std::unique_ptr<lbkit::Balancer> Build(lbkit::Helper* helper) const override {
    return std::make_unique<Observer>(helper);
  }
};

// ---------------------------------------------------------------------------
// Backends and the etcd writer

struct Listeners {
  lbkit_example::EchoService service{"bench"};
  std::unique_ptr<grpc::Server> server;
  std::vector<std::string> addresses;

  explicit Listeners(int count) {
    grpc::ServerBuilder builder;
    std::vector<int> ports(static_cast<size_t>(count), 0);
    for (int& port : ports) {
      builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    }
    builder.RegisterService(&service);
    server = builder.BuildAndStart();
    if (server == nullptr) throw std::runtime_error("could not start the listeners");
    for (int port : ports) {
      if (port == 0) throw std::runtime_error("a listener got no port");
      addresses.push_back("127.0.0.1:" + std::to_string(port));
    }
  }
  ~Listeners() { server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1)); }
};

// Writes registrations to etcd. A step's writes go out together (gRPC's
// callback API) and the step waits for all of them: one at a time, each
// waiting for etcd's commit, they could not keep up with the churn.
class Writer {
 public:
  struct Op {
    std::string address;
    bool add = false;
  };
  explicit Writer(const std::string& etcd)
      : kv_(etcdserverpb::KV::NewStub(
            grpc::CreateChannel(etcd, grpc::InsecureChannelCredentials()))) {}

  // Sends every op (calling `before(op)` just before sending it), waits for
  // all, throws on the first failure.
  void Write(const std::vector<Op>& ops, const std::function<void(const Op&)>& before) {
    struct Call {
      grpc::ClientContext context;
      etcdserverpb::PutRequest put;
      etcdserverpb::PutResponse put_response;
      etcdserverpb::DeleteRangeRequest del;
      etcdserverpb::DeleteRangeResponse del_response;
    };
    std::vector<std::unique_ptr<Call>> calls;
    std::mutex mu;
    std::condition_variable done_cv;
    size_t done = 0;
    std::string error;
    const Clock::time_point sent = Clock::now();
    auto finish = [&](const grpc::Status& status) {
      const uint32_t acked = Tracker::Since(sent, Clock::now());
      std::lock_guard<std::mutex> lock(mu);
      if (!status.ok() && error.empty()) error = status.error_message();
      ack_ns_.push_back(acked);
      ++done;
      done_cv.notify_all();
    };
    for (const Op& op : ops) {
      calls.push_back(std::make_unique<Call>());
      Call& call = *calls.back();
      call.context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
      const std::string key = lbkit::internal::EtcdEndpointKey(kService, op.address);
      before(op);
      if (op.add) {
        call.put.set_key(key);
        call.put.set_value(lbkit::internal::EncodeEtcdEndpoint(op.address, {}));
        kv_->async()->Put(&call.context, &call.put, &call.put_response, finish);
      } else {
        call.del.set_key(key);
        kv_->async()->DeleteRange(&call.context, &call.del, &call.del_response, finish);
      }
    }
    std::unique_lock<std::mutex> lock(mu);
    done_cv.wait(lock, [&] { return done == ops.size(); });
    if (!error.empty()) throw std::runtime_error("etcd write: " + error);
  }

  // From sending each write until etcd acknowledged it, since the last call.
  std::vector<uint32_t> TakeAcks() { return std::exchange(ack_ns_, {}); }

 private:
  std::vector<uint32_t> ack_ns_;
  std::unique_ptr<etcdserverpb::KV::Stub> kv_;
};

// ---------------------------------------------------------------------------
// A measured run

struct RunResult {
  std::string name;
  uint64_t calls = 0;
  uint64_t failed = 0;
  std::string first_error;
  double seconds = 0;
  double ready_seconds = 0;                         // channel created until every endpoint READY
  double process_cpu = 0;                           // CPU seconds per second
  double control_cpu = 0;                           // every lbkit-control thread's (the pool)
  int control_threads = 0;                          // how many lbkit-control threads
  double io_cpu = 0;                                // the lbkit-io thread's
  std::map<std::string, double> lbkit_threads_cpu;  // every lbkit-* thread, per second
  // lbkit-io + lbkit-control: every discovery update's work in the client,
  // with lbkit-io's other work (connectivity watching, relaying calls that
  // waited), which the baseline shows without the churn.
  double io_and_control_cpu = 0;
  Tracker::Latencies latencies;
  std::vector<uint32_t> etcd_ack_ns;
  uint64_t writes = 0;
};

size_t ReadySubchannels(lbkit::Channel& channel) {
  size_t ready = 0;
  for (const auto& sub : channel.Snapshot().subchannels) {
    if (sub.state == lbkit::ConnectivityState::kReady) ++ready;
  }
  return ready;
}

RunResult Run(const std::string& name, const std::string& target, const Flags& flags,
              const std::vector<std::string>& pool, std::vector<std::string> registered,
              Writer* writer) {
  RunResult result;
  result.name = name;
  auto tracker = std::make_shared<Tracker>();
  std::atomic_store(&current_tracker, tracker);

  lbkit::ChannelOptions options;
  options.default_service_config =
      std::string(R"({"loadBalancingConfig":[{")") + kObserver + R"(":{}}]})";
  grpc::Status status;
  const Clock::time_point created = Clock::now();
  std::shared_ptr<lbkit::Channel> channel =
      lbkit::CreateChannel(target, grpc::InsecureChannelCredentials(), options, &status);
  if (!status.ok()) throw std::runtime_error(name + ": " + status.error_message());
  channel->GetState(true);
  const size_t want = registered.size();
  while (ReadySubchannels(*channel) < want) {
    if (Clock::now() - created > std::chrono::seconds(120)) {
      throw std::runtime_error(name + ": endpoints not READY within 120 s (" +
                               std::to_string(ReadySubchannels(*channel)) + " of " +
                               std::to_string(want) + ")");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  result.ready_seconds = std::chrono::duration<double>(Clock::now() - created).count();
  tracker->Reset();
  if (writer != nullptr) writer->TakeAcks();  // the initial registration is not churn

  std::unique_ptr<Echo::Stub> stub = Echo::NewStub(channel);
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> calls{0}, failed{0};
  std::mutex error_mu;
  std::vector<std::thread> callers;
  const double cpu_before = ProcessCpuSeconds();
  const std::map<std::string, ThreadGroup> threads_before = ThreadsByName();
  const Clock::time_point start = Clock::now();
  for (int t = 0; t < flags.threads; ++t) {
    callers.emplace_back([&] {
      EchoRequest request;
      request.set_message("hi");
      while (!stop.load(std::memory_order_relaxed)) {
        grpc::ClientContext context;
        context.set_wait_for_ready(true);
        context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
        EchoResponse response;
        grpc::Status call = stub->UnaryEcho(&context, request, &response);
        calls.fetch_add(1, std::memory_order_relaxed);
        if (!call.ok()) {
          failed.fetch_add(1, std::memory_order_relaxed);
          std::lock_guard<std::mutex> lock(error_mu);
          if (result.first_error.empty()) {
            result.first_error = std::to_string(call.error_code()) + ": " + call.error_message();
          }
        }
      }
    });
  }

  // The churn: ten steps a second, each replacing a tenth of the second's
  // share. Registered addresses leave, unregistered ones of the pool come.
  std::mt19937 random(12345);
  std::set<std::string> in(registered.begin(), registered.end());
  std::vector<std::string> out;
  for (const std::string& address : pool) {
    if (in.count(address) == 0) out.push_back(address);
  }
  const int per_second = flags.endpoints * flags.churn_percent / 100;
  const auto step = std::chrono::milliseconds(100);
  Clock::time_point next = start;
  int64_t step_index = 0;
  while (Clock::now() - start < flags.duration) {
    next += step;
    if (writer != nullptr && per_second > 0) {
      // Spread per_second over ten steps without losing the remainder.
      const int this_step =
          static_cast<int>((step_index + 1) * per_second / 10 - step_index * per_second / 10);
      ++step_index;
      // Taken out of both lists first, so that no address leaves and comes
      // back within one step (its two writes would race).
      auto take = [&random](std::vector<std::string>& from) {
        size_t at = std::uniform_int_distribution<size_t>(0, from.size() - 1)(random);
        std::string address = std::move(from[at]);
        from[at] = std::move(from.back());
        from.pop_back();
        return address;
      };
      std::vector<Writer::Op> ops;
      for (int i = 0; i < this_step && !registered.empty() && !out.empty(); ++i) {
        ops.push_back({take(out), true});
        ops.push_back({take(registered), false});
      }
      for (const Writer::Op& op : ops) (op.add ? registered : out).push_back(op.address);
      writer->Write(ops, [&](const Writer::Op& op) { tracker->Wrote(op.address, op.add); });
      result.writes += ops.size();
    }
    std::this_thread::sleep_until(next);
  }
  const Clock::time_point end = Clock::now();
  const double cpu_after = ProcessCpuSeconds();
  const std::map<std::string, ThreadGroup> threads_after = ThreadsByName();
  stop = true;
  for (std::thread& caller : callers) caller.join();
  // Changes written in the last moments get up to 2 s to show.
  const Clock::time_point grace = Clock::now() + std::chrono::seconds(2);
  do {
    result.latencies = tracker->Take();
    if (result.latencies.unreflected == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  } while (Clock::now() < grace);
  if (writer != nullptr) result.etcd_ack_ns = writer->TakeAcks();
  std::atomic_store(&current_tracker, std::shared_ptr<Tracker>());
  channel->Shutdown();

  result.seconds = std::chrono::duration<double>(end - start).count();
  result.calls = calls.load();
  result.failed = failed.load();
  result.process_cpu = (cpu_after - cpu_before) / result.seconds;
  // By thread name: the lbkit-control pool's threads share one name, so
  // their CPU is summed. The pool and lbkit-io live as long as the process,
  // so nothing measured here ended inside the window.
  for (const auto& [thread, group] : threads_after) {
    auto before = threads_before.find(thread);
    double used =
        group.cpu_seconds - (before == threads_before.end() ? 0 : before->second.cpu_seconds);
    const double per_second = used / result.seconds;
    // The bench's own threads (main, callers) carry the process's name,
    // lbkit-bench: not lbkit's.
    if (thread.rfind("lbkit-", 0) == 0 && thread != "lbkit-bench") {
      result.lbkit_threads_cpu[thread] = per_second;
    }
    if (thread == "lbkit-control") {
      result.control_cpu = per_second;
      result.control_threads = group.count;
    }
    if (thread == "lbkit-io") result.io_cpu = per_second;
  }
  result.io_and_control_cpu = result.io_cpu + result.control_cpu;
  return result;
}

nlohmann::json Percentiles(std::vector<uint32_t> ns) {
  const size_t n = ns.size();
  const double p50 = PercentileUs(ns, 0.5), p90 = PercentileUs(ns, 0.9),
               p99 = PercentileUs(ns, 0.99), max = PercentileUs(ns, 1.0);
  return {{"count", n},
          {"p50_ms", p50 / 1000},
          {"p90_ms", p90 / 1000},
          {"p99_ms", p99 / 1000},
          {"max_ms", max / 1000}};
}

void Print(const RunResult& r) {
  std::printf("%-22s %9llu calls (%.0f/s), %llu failed%s%s\n", r.name.c_str(),
              static_cast<unsigned long long>(r.calls), r.calls / r.seconds,
              static_cast<unsigned long long>(r.failed),
              r.first_error.empty() ? "" : "; first: ", r.first_error.c_str());
  std::printf("%-22s all endpoints READY %.2f s after channel creation\n", "", r.ready_seconds);
  std::printf(
      "%-22s CPU %.3f s/s (process); lbkit-io + lbkit-control %.3f s/s (lbkit-io %.3f, "
      "lbkit-control pool of %d %.3f)\n",
      "", r.process_cpu, r.io_and_control_cpu, r.io_cpu, r.control_threads, r.control_cpu);
  if (r.writes > 0) {
    const Tracker::Latencies& l = r.latencies;
    for (const auto& [label, values] :
         std::vector<std::pair<const char*, const std::vector<uint32_t>*>>{
             {"etcd write acked", &r.etcd_ack_ns},
             {"put -> policy", &l.put_to_policy},
             {"put -> picker", &l.put_to_picker},
             {"delete -> policy", &l.delete_to_policy},
             {"delete -> picker", &l.delete_to_picker}}) {
      nlohmann::json p = Percentiles(*values);
      std::printf("%-22s %-17s n=%-6zu p50 %.1f ms  p90 %.1f ms  p99 %.1f ms  max %.1f ms\n", "",
                  label, values->size(), p["p50_ms"].get<double>(), p["p90_ms"].get<double>(),
                  p["p99_ms"].get<double>(), p["max_ms"].get<double>());
    }
    std::printf("%-22s %llu writes, %zu not reflected within 2 s of the end\n", "",
                static_cast<unsigned long long>(r.writes), l.unreflected);
  }
}

nlohmann::json ToJson(const RunResult& r) {
  nlohmann::json all = {{"calls", r.calls},
                        {"failed_calls", r.failed},
                        {"first_error", r.first_error},
                        {"seconds", r.seconds},
                        {"calls_per_second", r.calls / r.seconds},
                        {"all_ready_seconds", r.ready_seconds},
                        {"process_cpu_seconds_per_second", r.process_cpu},
                        {"io_and_control_cpu_seconds_per_second", r.io_and_control_cpu},
                        {"io_thread_cpu_seconds_per_second", r.io_cpu},
                        {"control_pool_cpu_seconds_per_second", r.control_cpu},
                        {"control_pool_threads", r.control_threads},
                        {"lbkit_threads_cpu_seconds_per_second", r.lbkit_threads_cpu},
                        {"writes", r.writes},
                        {"unreflected_writes", r.latencies.unreflected}};
  if (r.writes > 0) {
    all["etcd_write_acked"] = Percentiles(r.etcd_ack_ns);
    all["put_to_policy"] = Percentiles(r.latencies.put_to_policy);
    all["put_to_picker"] = Percentiles(r.latencies.put_to_picker);
    all["delete_to_policy"] = Percentiles(r.latencies.delete_to_policy);
    all["delete_to_picker"] = Percentiles(r.latencies.delete_to_picker);
  }
  return all;
}

}  // namespace

int RunDiscovery(int argc, char** argv) {
  Flags flags;
  if (int status = ParseFlags(argc, argv, &flags); status >= 0) return status;
  RaiseFileLimit();
  grpc::Status registered_status =
      lbkit::RegisterBalancer(std::make_shared<ObserverBuilder>(), lbkit::OnDuplicate::kReplace);
  if (!registered_status.ok()) throw std::runtime_error(registered_status.error_message());

  lbkit_test::EtcdCluster etcd(1);
  if (!etcd.ok()) throw std::runtime_error("etcd: " + etcd.error());
  const int per_second = flags.endpoints * flags.churn_percent / 100;
  Listeners listeners(flags.endpoints + std::max(per_second, 1));
  std::vector<std::string> registered(listeners.addresses.begin(),
                                      listeners.addresses.begin() + flags.endpoints);
  Writer writer(etcd.client_endpoint(0));
  std::vector<Writer::Op> initial;
  for (const std::string& address : registered) initial.push_back({address, true});
  writer.Write(initial, [](const Writer::Op&) {});
  std::printf(
      "discovery: etcd on %s, %d endpoints registered of %zu listeners, churn %d%%/s "
      "(%d writes/s each way), %d callers, %s per run\n",
      etcd.client_endpoint(0).c_str(), flags.endpoints, listeners.addresses.size(),
      flags.churn_percent, per_second, flags.threads, FormatDuration(flags.duration).c_str());

  nlohmann::json json = {{"scenario", "discovery"},
                         {"endpoints", flags.endpoints},
                         {"churn_percent_per_second", flags.churn_percent},
                         {"threads", flags.threads}};
  RunResult churn =
      Run("etcd, churning", etcd.Target(kService), flags, listeners.addresses, registered, &writer);
  Print(churn);
  json["etcd_churn"] = ToJson(churn);
  if (flags.baseline) {
    RunResult baseline = Run("static, no churn", "static:///" + absl::StrJoin(registered, ","),
                             flags, listeners.addresses, registered, nullptr);
    Print(baseline);
    json["static_baseline"] = ToJson(baseline);
    // Both runs keep the machine's cores busy, so the process's CPU is no
    // measure of discovery's cost; lbkit-io + lbkit-control is (above),
    // beside the same threads' in the baseline.
    const double ratio = (churn.calls / churn.seconds) / (baseline.calls / baseline.seconds);
    std::printf("calls/s while churning: %.2f of the static baseline's\n", ratio);
    json["churn_throughput_ratio"] = ratio;
  }
  if (!flags.json_path.empty()) {
    std::ofstream out(flags.json_path);
    out << json.dump(2) << "\n";
    if (!out) throw std::runtime_error("could not write " + flags.json_path);
  }
  return churn.failed == 0 ? 0 : 1;
}

}  // namespace lbkit_bench
