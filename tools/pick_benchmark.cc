// lbkit-pick-benchmark: the data plane's pick and the control plane's picker
// rebuild, in isolation (Google Benchmark; GitHub issue 4).
//
//   BM_IdleSubchannelMemory/1000 (first, while the heap is fresh)
//       Memory per idle endpoint: RSS and heap growth from creating 1,000 real
//       (never connected) subchannels.
//   BM_Pick/<policy>/<endpoints>/threads:<n>
//       Picker::Pick() of a picker published by the real policy (round_robin,
//       custom_round_robin, pick_first, random) with every endpoint READY. Read the CPU
//       column: with threads:2 it is the CPU time of one pick on one thread.
//       random_weighted is random with weights 1 to 4 (the alias table).
//       weighted_round_robin has load reports giving weights 1 to 4 (the
//       stride scheduler); weighted_round_robin_even has none (its plain
//       rotation).
//   BM_PickDone/<policy>/<endpoints>/threads:<n>
//       Pick() and then the pick's done-callback, as every call does:
//       least_request raises a count at the pick and lowers it at the end;
//       weighted_round_robin holds its endpoint's weight for the call;
//       outlier_detection (over round_robin, failurePercentageEjection on)
//       counts the call's end for the picked endpoint.
//       round_robin is the baseline (it attaches no callback).
//   BM_RingHashPick/{header,random}/<endpoints>/threads:<n>
//       ring_hash's Pick() with every endpoint READY: `header`, calls
//       carrying requestHashHeader (1,024 distinct values, in turn: hash,
//       ring search, the endpoint's pick); `random`, calls without it (a
//       random hash instead).
//   BM_SlotReadPick/round_robin/<endpoints>/threads:<n>
//       PickerSlot::Read (the channel's lock-free picker slot) plus a bare
//       Pick().
//   BM_SlotReadGuardedPick/round_robin/<endpoints>/threads:<n>
//       What ClientConn::RouteCall does before gRPC: the same through
//       GuardedPick, which turns a throwing Pick into a failed call. Its
//       time over BM_SlotReadPick's is the cost of that guard (none expected:
//       zero-cost exception handling).
//   BM_RoundRobinUpdate/{fresh,same}/10000
//       UpdateResolverState with 10,000 endpoints until the new picker is
//       published: into an empty balancer (all children READY as they are
//       created), and again with the same list.
//   BM_RoundRobinRebuildOnChildReady/10000
//       One child of 10,000 comes back READY: build and publish the picker.
//   BM_RoundRobinOneEndpointChanged/10000
//       An update that replaces one endpoint out of 10,000; counters say how
//       many of the other subchannels were shut down (must be 0).
//
// Balancers are driven synchronously, as unit tests do, with test subchannels
// (no sockets); publishing goes through a real PickerSlot, as in the channel.
#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <benchmark/benchmark.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <lbkit/lbkit.h>
#include <lbkit/testing/fake_helper.h>

#include "core/guarded_pick.h"
#include "core/picker_slot.h"
#include "core/subchannel.h"
#include "core/work_serializer.h"
#include "custom_round_robin.h"
#include "policies/round_robin.h"

namespace {

using lbkit::ConnectivityState;
using lbkit::internal::PickerSlot;
using lbkit::internal::SubchannelImpl;

// "10.a.b.c:443" for i = a*65536 + b*256 + c. Only names: test subchannels
// never connect.
std::string Address(int i) {
  return "10." + std::to_string((i >> 16) & 255) + "." + std::to_string((i >> 8) & 255) + "." +
         std::to_string(i & 255) + ":443";
}

// With `weighted`, endpoint i has weight 1 + i % 4.
std::vector<lbkit::Endpoint> Endpoints(int n, bool weighted = false) {
  std::vector<lbkit::Endpoint> endpoints;
  endpoints.reserve(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    endpoints.push_back(lbkit::Endpoint{{Address(i)}});
    if (weighted) endpoints.back().attributes.weight = static_cast<uint32_t>(1 + i % 4);
  }
  return endpoints;
}

std::shared_ptr<const lbkit::BalancerConfig> ParseConfig(const std::string& policy,
                                                         const nlohmann::json& json) {
  std::shared_ptr<const lbkit::BalancerConfig> config;
  grpc::Status status = lbkit::FindBalancer(policy)->ParseConfig(json, &config);
  if (!status.ok()) {
    std::fprintf(stderr, "config of %s: %s\n", policy.c_str(), status.error_message().c_str());
    std::abort();
  }
  return config;
}

const lbkit::PickArgs& Args() {
  static const std::multimap<std::string, std::string>* metadata =
      new std::multimap<std::string, std::string>();
  static const lbkit::PickArgs* args = [] {
    auto* a = new lbkit::PickArgs();
    a->method = "/grpc.examples.echo.Echo/UnaryEcho";
    a->metadata = metadata;
    return a;
  }();
  return *args;
}

// Like lbkit::testing::FakeHelper, but fit for 10,000 endpoints: it keeps only the
// current picker (in a real PickerSlot, published as the channel does) instead
// of every state, and can hand out subchannels that are READY from the start,
// so that a whole update settles in one picker build instead of one per child.
class BenchHelper final : public lbkit::Helper {
 public:
  explicit BenchHelper(bool ready_on_create)
      : ready_on_create_(ready_on_create), slot_(std::make_shared<lbkit::QueuePicker>()) {}

  std::shared_ptr<lbkit::Subchannel> CreateSubchannel(
      const std::string& address, lbkit::SubchannelStateListener listener) override {
    auto subchannel = SubchannelImpl::CreateForTesting(address, std::move(listener));
    // The policy has not stored it yet, so it ignores this report and then
    // finds the subchannel READY when it looks.
    if (ready_on_create_) subchannel->SetStateForTesting(ConnectivityState::kReady);
    created.push_back(subchannel);
    return subchannel;
  }
  void UpdateState(lbkit::BalancerState state) override {
    state_ = state.state;
    ++publishes;
    std::shared_ptr<lbkit::Picker> previous = slot_.Publish(std::move(state.picker));
    previous.reset();  // the old picker goes here, as in ClientConn::PublishState
  }
  void RequestReresolution() override {}
  // Kept until FireTimers (weighted_round_robin's weight update).
  std::unique_ptr<lbkit::Timer> StartTimer(std::chrono::milliseconds,
                                           std::function<void()> fn) override {
    timers_[++next_timer_] = std::move(fn);
    return std::make_unique<BenchTimer>(this, next_timer_);
  }
  // Kept until RunPosted: ring_hash's picker asks for connections this way.
  void Post(std::function<void()> fn) override { posted_.push_back(std::move(fn)); }
  const std::string& target() const override { return target_; }
  void RunPosted() {
    while (!posted_.empty()) {
      std::vector<std::function<void()>> batch;
      batch.swap(posted_);
      for (auto& fn : batch) fn();
    }
  }

  // Runs the timers pending now (not those they start).
  void FireTimers() {
    std::map<uint64_t, std::function<void()>> due;
    due.swap(timers_);
    for (auto& entry : due) entry.second();
  }

  ConnectivityState state() const { return state_; }
  const std::shared_ptr<lbkit::Picker>& picker() const { return slot_.current(); }
  PickerSlot& slot() { return slot_; }

  std::vector<std::weak_ptr<SubchannelImpl>> created;
  int publishes = 0;

 private:
  class BenchTimer final : public lbkit::Timer {
   public:
    BenchTimer(BenchHelper* helper, uint64_t id) : helper_(helper), id_(id) {}
    ~BenchTimer() override { helper_->timers_.erase(id_); }

   private:
    BenchHelper* helper_;
    uint64_t id_;
  };
  std::map<uint64_t, std::function<void()>> timers_;
  uint64_t next_timer_ = 0;
  bool ready_on_create_;
  PickerSlot slot_;
  ConnectivityState state_ = ConnectivityState::kIdle;
  std::string target_ = "bench:///";
  std::vector<std::function<void()>> posted_;
};

// Resident set size, from /proc/self/statm.
int64_t RssBytes() {
  std::ifstream statm("/proc/self/statm");
  int64_t pages = 0;
  int64_t resident = 0;
  statm >> pages >> resident;
  return resident * sysconf(_SC_PAGESIZE);
}

int64_t HeapBytes() {
  struct mallinfo2 info = mallinfo2();
  return static_cast<int64_t>(info.uordblks + info.hblkhd);
}

// Real subchannels (a grpc::Channel each, watched by lbkit's connectivity
// watcher), created as a balancer would and never asked to connect: they stay
// IDLE and open no socket.
void BM_IdleSubchannelMemory(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  auto serializer = std::make_shared<lbkit::internal::WorkSerializer>();
  auto credentials = grpc::InsecureChannelCredentials();
  grpc::ChannelArguments args;
  auto create = [&](int port) {
    return SubchannelImpl::Create("127.0.0.1:" + std::to_string(port), credentials, args,
                                  serializer, [](ConnectivityState, const grpc::Status&) {});
  };
  // gRPC's own start-up (threads, pools) is not the subchannels' cost.
  std::vector<std::shared_ptr<SubchannelImpl>> warm;
  for (int i = 0; i < 32; ++i) warm.push_back(create(20000 + i));
  std::vector<std::shared_ptr<SubchannelImpl>> subchannels;
  subchannels.reserve(static_cast<size_t>(n));
  for (auto _ : state) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    malloc_trim(0);  // freed memory back to the kernel: RSS then counts new pages only
    const int64_t rss0 = RssBytes();
    const int64_t heap0 = HeapBytes();
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < n; ++i) subchannels.push_back(create(30000 + i));
    const auto t1 = std::chrono::steady_clock::now();
    std::this_thread::sleep_for(std::chrono::milliseconds(300));  // let watches settle
    const int64_t rss1 = RssBytes();
    const int64_t heap1 = HeapBytes();
    state.counters["rss_bytes_per_subchannel"] = static_cast<double>(rss1 - rss0) / n;
    state.counters["heap_bytes_per_subchannel"] = static_cast<double>(heap1 - heap0) / n;
    state.counters["create_us_per_subchannel"] =
        std::chrono::duration<double, std::micro>(t1 - t0).count() / n;
  }
  // All still IDLE (asked on the serializer, where state() lives).
  std::promise<int> not_idle;
  serializer->Run([&] {
    int count = 0;
    for (const auto& subchannel : subchannels) {
      if (subchannel->state() != ConnectivityState::kIdle) ++count;
    }
    for (const auto& subchannel : subchannels) subchannel->Shutdown();
    for (const auto& subchannel : warm) subchannel->Shutdown();
    not_idle.set_value(count);
  });
  const int not_idle_count = not_idle.get_future().get();
  state.counters["not_idle"] = not_idle_count;
  if (not_idle_count != 0) state.SkipWithError("a subchannel left IDLE");
  subchannels.clear();
  warm.clear();
  serializer->Shutdown();
}
// First, while the heap is fresh.
BENCHMARK(BM_IdleSubchannelMemory)->Arg(1000)->Iterations(1)->Unit(benchmark::kMillisecond);

// A picker published by a real policy over `n` READY endpoints.
struct PickFixture {
  std::unique_ptr<lbkit::Helper> helper;
  std::unique_ptr<lbkit::Balancer> balancer;
  std::shared_ptr<lbkit::Picker> picker;
  std::unique_ptr<PickerSlot> slot;  // holding `picker`, for BM_SlotReadPick
};

// Calls carrying 1,024 distinct values of ring_hash's header.
const std::vector<lbkit::PickArgs>& KeyedArgs() {
  static const auto* keys = [] {
    auto* k = new std::vector<std::multimap<std::string, std::string>>(1024);
    for (size_t i = 0; i < k->size(); ++i) (*k)[i] = {{"x-key", "user-" + std::to_string(i)}};
    return k;
  }();
  static const auto* args = [] {
    auto* a = new std::vector<lbkit::PickArgs>(keys->size(), Args());
    for (size_t i = 0; i < a->size(); ++i) (*a)[i].metadata = &(*keys)[i];
    return a;
  }();
  return *args;
}

// weighted_round_robin over Endpoints(n) (still a plain rotation): one call
// to each endpoint i ends with a report giving it weight 1 + i % 4, then the
// weight update runs. Aborts unless picks then follow those weights.
void ReportWeightsOneToFour(BenchHelper& helper, int n) {
  std::map<std::string, int> index;
  for (int i = 0; i < n; ++i) index[Address(i)] = i;
  for (int i = 0; i < n; ++i) {
    lbkit::PickResult result = helper.picker()->Pick(Args());
    lbkit::LoadReport report;
    report.qps = 100.0 * (1 + index.at(result.subchannel()->address()) % 4);
    report.cpu_utilization = 0.5;
    lbkit::testing::CallEnd().WithLoadReport(report).Finish(result);
  }
  helper.FireTimers();
  int light = 0;  // picks of weight-1 endpoints
  int heavy = 0;  // and of weight-2 ones: twice as many
  for (int i = 0; i < 10 * n; ++i) {
    lbkit::PickResult result = helper.picker()->Pick(Args());
    const int weight = 1 + index.at(result.subchannel()->address()) % 4;
    light += weight == 1;
    heavy += weight == 2;
    lbkit::testing::CallEnd().Finish(result);
  }
  if (2 * heavy < 3 * light || 2 * heavy > 5 * light) {
    std::fprintf(stderr, "weighted_round_robin over %d endpoints: %d light and %d heavy picks\n", n,
                 light, heavy);
    std::abort();
  }
}

std::unique_ptr<PickFixture> BuildFixture(const std::string& name, int n) {
  auto fixture = std::make_unique<PickFixture>();
  const bool weighted = name == "random_weighted";
  const bool wrr = name.rfind("weighted_round_robin", 0) == 0;
  const std::string policy = weighted ? "random" : wrr ? "weighted_round_robin" : name;
  const bool random = policy == "random" || policy == "least_request" || wrr;
  lbkit::BalancerUpdate update;
  update.endpoints = Endpoints(n, weighted);
  if (policy == "pick_first") {
    // As the unit tests do: FakeHelper, then the first address connects.
    auto helper = std::make_unique<lbkit::testing::FakeHelper>();
    fixture->balancer = lbkit::FindBalancer("pick_first")->Build(helper.get());
    update.config = ParseConfig(policy, nlohmann::json::object());
    fixture->balancer->UpdateResolverState(std::move(update));
    helper->subchannels().front()->SetState(ConnectivityState::kReady);
    if (helper->last_state().state != ConnectivityState::kReady) std::abort();
    fixture->picker = helper->last_state().picker;
    fixture->helper = std::move(helper);
  } else if (policy == "ring_hash") {
    // ring_hash connects an endpoint when a call lands on it. At 10,000
    // endpoints a 1,024-minimum ring gives each one entry, and some arcs are
    // too small for any number of keys to find: connect what the benchmark's
    // calls reach instead. Every keyed call completes; random ones do
    // unless they land on one of the few arcs 50 * n random picks missed.
    auto helper = std::make_unique<BenchHelper>(/*ready_on_create=*/true);
    fixture->balancer = lbkit::FindBalancer(policy)->Build(helper.get());
    update.config = ParseConfig(policy, nlohmann::json{{"requestHashHeader", "x-key"}});
    fixture->balancer->UpdateResolverState(std::move(update));
    for (int round = 0;; ++round) {
      if (round == 10) std::abort();
      bool all = true;
      for (const lbkit::PickArgs& args : KeyedArgs()) {
        all &= helper->picker()->Pick(args).kind() == lbkit::PickResult::Kind::kComplete;
      }
      if (all) break;
      helper->RunPosted();
    }
    for (int i = 0; i < 50 * n; ++i) {
      helper->picker()->Pick(Args());
      if (i % 64 == 63) helper->RunPosted();  // a batch of requests per picker
    }
    helper->RunPosted();
    if (helper->state() != ConnectivityState::kReady) std::abort();
    fixture->picker = helper->picker();
    fixture->helper = std::move(helper);
    fixture->slot = std::make_unique<PickerSlot>(fixture->picker);
    return fixture;
  } else if (wrr) {
    auto helper = std::make_unique<BenchHelper>(/*ready_on_create=*/true);
    fixture->balancer = lbkit::FindBalancer(policy)->Build(helper.get());
    update.config = ParseConfig(policy, nlohmann::json{{"blackoutPeriod", "0s"}});
    fixture->balancer->UpdateResolverState(std::move(update));
    if (name == "weighted_round_robin") ReportWeightsOneToFour(*helper, n);
    if (helper->state() != ConnectivityState::kReady) std::abort();
    fixture->picker = helper->picker();
    fixture->helper = std::move(helper);
  } else {
    auto helper = std::make_unique<BenchHelper>(/*ready_on_create=*/true);
    fixture->balancer = lbkit::FindBalancer(policy)->Build(helper.get());
    if (policy == "custom_round_robin") {
      update.config = ParseConfig(policy, nlohmann::json{{"chooseSecond", 3u}});
    } else if (policy == "outlier_detection") {
      // Counting on (an algorithm set), over round_robin: every pick gets
      // the done-callback that counts the call's end.
      update.config = ParseConfig(policy, nlohmann::json::parse(R"({"failurePercentageEjection":{},
                                            "childPolicy":[{"round_robin":{}}]})"));
    } else {
      update.config = ParseConfig(policy, nlohmann::json::object());
    }
    fixture->balancer->UpdateResolverState(std::move(update));
    if (helper->state() != ConnectivityState::kReady) std::abort();
    fixture->picker = helper->picker();
    fixture->helper = std::move(helper);
  }
  // Every pick completes; round_robin visits every endpoint once per cycle;
  // 64 random picks see more than one endpoint (all alike: p = 2^-63).
  std::set<std::string> seen;
  for (int i = 0; i < std::max(n, random ? 64 : 6); ++i) {
    lbkit::PickResult result = fixture->picker->Pick(Args());
    if (result.kind() != lbkit::PickResult::Kind::kComplete || result.subchannel() == nullptr) {
      std::abort();
    }
    seen.insert(result.subchannel()->address());
    if (result.on_done()) result.on_done()(lbkit::CallDoneInfo(grpc::Status::OK));
  }
  size_t expected = policy == "round_robin" || policy == "outlier_detection"
                        ? static_cast<size_t>(n)
                    : policy == "pick_first" ? 1
                                             : 2;
  if (random ? seen.size() < 2 : seen.size() != expected) {
    std::fprintf(stderr, "%s over %d endpoints picked %zu distinct ones, expected %zu\n",
                 policy.c_str(), n, seen.size(), expected);
    std::abort();
  }
  fixture->slot = std::make_unique<PickerSlot>(fixture->picker);
  return fixture;
}

// Fixtures are built once and shared by every thread of a benchmark.
PickFixture& Fixture(const std::string& policy, int n) {
  static std::mutex mu;
  static auto* fixtures = new std::map<std::pair<std::string, int>, std::unique_ptr<PickFixture>>();
  std::lock_guard<std::mutex> lock(mu);
  std::unique_ptr<PickFixture>& fixture = (*fixtures)[{policy, n}];
  if (fixture == nullptr) fixture = BuildFixture(policy, n);
  return *fixture;
}

void BM_Pick(benchmark::State& state, const char* policy) {
  const lbkit::Picker& picker = *Fixture(policy, static_cast<int>(state.range(0))).picker;
  const lbkit::PickArgs& args = Args();
  for (auto _ : state) {
    lbkit::PickResult result = picker.Pick(args);
    benchmark::DoNotOptimize(result.subchannel());
  }
}
BENCHMARK_CAPTURE(BM_Pick, round_robin, "round_robin")
    ->Arg(2)
    ->Arg(100)
    ->Arg(10000)
    ->Threads(1)
    ->Threads(2);
BENCHMARK_CAPTURE(BM_Pick, custom_round_robin, "custom_round_robin")
    ->Arg(2)
    ->Arg(100)
    ->Arg(10000)
    ->Threads(1)
    ->Threads(2);
BENCHMARK_CAPTURE(BM_Pick, pick_first, "pick_first")
    ->Arg(2)
    ->Arg(100)
    ->Arg(10000)
    ->Threads(1)
    ->Threads(2);

BENCHMARK_CAPTURE(BM_Pick, random, "random")->Arg(2)->Arg(100)->Arg(10000)->Threads(1)->Threads(2);
BENCHMARK_CAPTURE(BM_Pick, random_weighted, "random_weighted")
    ->Arg(2)
    ->Arg(100)
    ->Arg(10000)
    ->Threads(1)
    ->Threads(2);

BENCHMARK_CAPTURE(BM_Pick, weighted_round_robin, "weighted_round_robin")
    ->Arg(2)
    ->Arg(100)
    ->Arg(10000)
    ->Threads(1)
    ->Threads(2);

// A policy whose picks attach a done-callback (least_request) must see it
// run, or its counts only grow: each iteration picks and ends the call.
void BM_PickDone(benchmark::State& state, const char* policy) {
  const lbkit::Picker& picker = *Fixture(policy, static_cast<int>(state.range(0))).picker;
  const lbkit::PickArgs& args = Args();
  const lbkit::CallDoneInfo info(grpc::Status::OK);
  for (auto _ : state) {
    lbkit::PickResult result = picker.Pick(args);
    benchmark::DoNotOptimize(result.subchannel());
    if (result.on_done()) result.on_done()(info);
  }
}
BENCHMARK_CAPTURE(BM_PickDone, least_request, "least_request")
    ->Arg(2)
    ->Arg(100)
    ->Arg(10000)
    ->Threads(1)
    ->Threads(2);
BENCHMARK_CAPTURE(BM_PickDone, weighted_round_robin, "weighted_round_robin")
    ->Arg(2)
    ->Arg(100)
    ->Arg(10000)
    ->Threads(1)
    ->Threads(2);
BENCHMARK_CAPTURE(BM_PickDone, weighted_round_robin_even, "weighted_round_robin_even")
    ->Arg(2)
    ->Arg(100)
    ->Arg(10000)
    ->Threads(1)
    ->Threads(2);
// outlier_detection over round_robin: the child's pick, finding the
// endpoint's counter on the wrapper, a done-callback, and one atomic add at
// the call's end.
BENCHMARK_CAPTURE(BM_PickDone, outlier_detection, "outlier_detection")
    ->Arg(2)
    ->Arg(100)
    ->Arg(10000)
    ->Threads(1)
    ->Threads(2);
BENCHMARK_CAPTURE(BM_PickDone, round_robin, "round_robin")
    ->Arg(2)
    ->Arg(100)
    ->Arg(10000)
    ->Threads(1)
    ->Threads(2);

void BM_RingHashPick(benchmark::State& state, bool header) {
  const lbkit::Picker& picker = *Fixture("ring_hash", static_cast<int>(state.range(0))).picker;
  const std::vector<lbkit::PickArgs>& keyed = KeyedArgs();
  size_t i = 0;
  for (auto _ : state) {
    const lbkit::PickArgs& args = header ? keyed[i++ & 1023] : Args();
    lbkit::PickResult result = picker.Pick(args);
    benchmark::DoNotOptimize(result.subchannel());
  }
}
BENCHMARK_CAPTURE(BM_RingHashPick, header, true)
    ->Arg(2)
    ->Arg(100)
    ->Arg(10000)
    ->Threads(1)
    ->Threads(2);
BENCHMARK_CAPTURE(BM_RingHashPick, random, false)
    ->Arg(2)
    ->Arg(100)
    ->Arg(10000)
    ->Threads(1)
    ->Threads(2);

void BM_SlotReadPick(benchmark::State& state, const char* policy) {
  PickerSlot& slot = *Fixture(policy, static_cast<int>(state.range(0))).slot;
  const lbkit::PickArgs& args = Args();
  for (auto _ : state) {
    PickerSlot::ReadGuard picker = slot.Read();
    lbkit::PickResult result = picker->Pick(args);
    benchmark::DoNotOptimize(result.subchannel());
  }
}
BENCHMARK_CAPTURE(BM_SlotReadPick, round_robin, "round_robin")
    ->Arg(2)
    ->Arg(10000)
    ->Threads(1)
    ->Threads(2);

void BM_SlotReadGuardedPick(benchmark::State& state, const char* policy) {
  PickerSlot& slot = *Fixture(policy, static_cast<int>(state.range(0))).slot;
  const lbkit::PickArgs& args = Args();
  for (auto _ : state) {
    PickerSlot::ReadGuard picker = slot.Read();
    lbkit::PickResult result = lbkit::internal::GuardedPick(*picker.get(), args);
    benchmark::DoNotOptimize(result.subchannel());
  }
}
BENCHMARK_CAPTURE(BM_SlotReadGuardedPick, round_robin, "round_robin")
    ->Arg(2)
    ->Arg(10000)
    ->Threads(1)
    ->Threads(2);

constexpr int kLarge = 10000;

// A round_robin balancer over `n` READY endpoints.
struct RoundRobinUnderTest {
  explicit RoundRobinUnderTest(bool ready_on_create = true)
      : helper(ready_on_create),
        balancer(lbkit::FindBalancer("round_robin")->Build(&helper)),
        config(ParseConfig("round_robin", nlohmann::json::object())) {}
  grpc::Status Update(std::vector<lbkit::Endpoint> endpoints) {
    lbkit::BalancerUpdate update;
    update.endpoints = std::move(endpoints);
    update.config = config;
    return balancer->UpdateResolverState(std::move(update));
  }
  BenchHelper helper;
  std::unique_ptr<lbkit::Balancer> balancer;
  std::shared_ptr<const lbkit::BalancerConfig> config;
};

void BM_RoundRobinUpdate_Fresh(benchmark::State& state) {
  const std::vector<lbkit::Endpoint> endpoints = Endpoints(static_cast<int>(state.range(0)));
  for (auto _ : state) {
    state.PauseTiming();
    auto rr = std::make_unique<RoundRobinUnderTest>();
    std::vector<lbkit::Endpoint> copy = endpoints;
    state.ResumeTiming();
    rr->Update(std::move(copy));
    state.PauseTiming();
    if (rr->helper.state() != ConnectivityState::kReady) state.SkipWithError("not READY");
    state.counters["publishes"] = rr->helper.publishes;
    rr.reset();
    state.ResumeTiming();
  }
}
BENCHMARK(BM_RoundRobinUpdate_Fresh)
    ->Name("BM_RoundRobinUpdate/fresh")
    ->Arg(kLarge)
    ->Iterations(10)
    ->Unit(benchmark::kMillisecond);

void BM_RoundRobinUpdate_Same(benchmark::State& state) {
  const std::vector<lbkit::Endpoint> endpoints = Endpoints(static_cast<int>(state.range(0)));
  RoundRobinUnderTest rr;
  rr.Update(endpoints);
  const int before = rr.helper.publishes;
  for (auto _ : state) {
    state.PauseTiming();
    std::vector<lbkit::Endpoint> copy = endpoints;
    state.ResumeTiming();
    rr.Update(std::move(copy));
  }
  state.counters["publishes_per_update"] =
      static_cast<double>(rr.helper.publishes - before) / static_cast<double>(state.iterations());
}
BENCHMARK(BM_RoundRobinUpdate_Same)
    ->Name("BM_RoundRobinUpdate/same")
    ->Arg(kLarge)
    ->Unit(benchmark::kMillisecond);

std::shared_ptr<SubchannelImpl> FindLive(const BenchHelper& helper, const std::string& address) {
  for (auto it = helper.created.rbegin(); it != helper.created.rend(); ++it) {
    std::shared_ptr<SubchannelImpl> subchannel = it->lock();
    if (subchannel != nullptr && subchannel->address() == address && !subchannel->is_shutdown()) {
      return subchannel;
    }
  }
  return nullptr;
}

void BM_RoundRobinRebuildOnChildReady(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  RoundRobinUnderTest rr;
  rr.Update(Endpoints(n));
  std::shared_ptr<SubchannelImpl> flapping = FindLive(rr.helper, Address(n / 2));
  if (flapping == nullptr) {
    state.SkipWithError("no subchannel");
    return;
  }
  int timed_publishes = 0;
  for (auto _ : state) {
    state.PauseTiming();
    // Down (not timed): its pick_first goes IDLE, then CONNECTING; round_robin
    // publishes pickers over the other n-1.
    flapping->SetStateForTesting(ConnectivityState::kTransientFailure);
    const int before = rr.helper.publishes;
    state.ResumeTiming();
    flapping->SetStateForTesting(ConnectivityState::kReady);  // picker over all n
    state.PauseTiming();
    timed_publishes += rr.helper.publishes - before;
    if (rr.helper.state() != ConnectivityState::kReady) state.SkipWithError("not READY");
    state.ResumeTiming();
  }
  state.counters["publishes_per_iteration"] =
      static_cast<double>(timed_publishes) / static_cast<double>(state.iterations());
}
BENCHMARK(BM_RoundRobinRebuildOnChildReady)->Arg(kLarge)->Unit(benchmark::kMicrosecond);

void BM_RoundRobinOneEndpointChanged(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  const int changed = n / 2;
  std::vector<lbkit::Endpoint> lists[2] = {Endpoints(n), Endpoints(n)};
  lists[1][static_cast<size_t>(changed)] = lbkit::Endpoint{{"10.255.255.254:443"}};
  RoundRobinUnderTest rr;
  rr.Update(lists[0]);
  int64_t others_shut_down = 0;
  int64_t replaced_shut_down = 0;
  int64_t timed_publishes = 0;
  int64_t created = 0;
  size_t which = 0;
  for (auto _ : state) {
    state.PauseTiming();
    which ^= 1;
    const std::string removed = lists[which ^ 1][static_cast<size_t>(changed)].addresses[0];
    // Every subchannel live before the update, as weak references (they must
    // not be kept alive by this check).
    std::vector<std::pair<std::weak_ptr<SubchannelImpl>, std::string>> live;
    live.reserve(static_cast<size_t>(n));
    for (const auto& weak : rr.helper.created) {
      std::shared_ptr<SubchannelImpl> subchannel = weak.lock();
      if (subchannel != nullptr && !subchannel->is_shutdown()) {
        live.emplace_back(weak, subchannel->address());
      }
    }
    const size_t created_before = rr.helper.created.size();
    const int publishes_before = rr.helper.publishes;
    std::vector<lbkit::Endpoint> copy = lists[which];
    state.ResumeTiming();
    rr.Update(std::move(copy));
    state.PauseTiming();
    timed_publishes += rr.helper.publishes - publishes_before;
    created += static_cast<int64_t>(rr.helper.created.size() - created_before);
    for (const auto& [weak, address] : live) {
      std::shared_ptr<SubchannelImpl> subchannel = weak.lock();
      if (subchannel != nullptr && !subchannel->is_shutdown()) continue;  // untouched
      if (address == removed) {
        ++replaced_shut_down;
      } else {
        ++others_shut_down;
      }
    }
    if (rr.helper.state() != ConnectivityState::kReady) state.SkipWithError("not READY");
    state.ResumeTiming();
  }
  const double iterations = static_cast<double>(state.iterations());
  state.counters["others_shut_down"] = static_cast<double>(others_shut_down);
  state.counters["replaced_shut_down_per_update"] =
      static_cast<double>(replaced_shut_down) / iterations;
  state.counters["subchannels_created_per_update"] = static_cast<double>(created) / iterations;
  state.counters["publishes_per_update"] = static_cast<double>(timed_publishes) / iterations;
  // The last picker still spans all n endpoints, the new one included.
  std::set<std::string> seen;
  const lbkit::Picker& picker = *rr.helper.picker();
  for (int i = 0; i < n; ++i) {
    lbkit::PickResult result = picker.Pick(Args());
    if (result.subchannel() != nullptr) seen.insert(result.subchannel()->address());
  }
  state.counters["distinct_endpoints_picked"] = static_cast<double>(seen.size());
  if (others_shut_down != 0) state.SkipWithError("an unchanged endpoint lost its subchannel");
}
BENCHMARK(BM_RoundRobinOneEndpointChanged)->Arg(kLarge)->Unit(benchmark::kMicrosecond);

}  // namespace

int main(int argc, char** argv) {
  if (grpc::Status registered = customlb::RegisterCustomRoundRobin(); !registered.ok()) {
    std::fprintf(stderr, "%s\n", registered.error_message().c_str());
    return 1;
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
