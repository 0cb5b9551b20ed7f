// lbkit-bench --scenario cold-start: what a new channel costs before and
// beside its calls, lbkit's against gRPC's own (GitHub issue 12;
// docs/performance.md, "Cold start and footprint").
//
// Channels, each with connections of its own (gRPC's native channels get a
// local subchannel pool, as lbkit's subchannels already do):
//
//   lbkit_round_robin     lbkit::CreateChannel("static:///a,b,..."), round_robin
//   native_round_robin    grpc::CreateCustomChannel("ipv4:a,b,..."), round_robin: the baseline
//   native_round_robin_2  the baseline again: an A/A control showing the machine's noise
//
// The backends run in child processes (this executable again, in the hidden
// mode "--scenario cold-start-backend --ports N"), so the threads and heap
// measured here are the client's alone. A child runs one callback echo
// server per port on 127.0.0.1:0, each replying with its own address, prints
// its ports, and exits when its stdin closes: when we close it, or die.
//
// Three measurements, the channels taking turns in rotated order
// (A B C, B C A, C A B, ...):
//
//   time to first call  create the channel and make one wait-for-ready
//                       unary call at once; the time until it returns OK
//   time to all ready   create the channel, GetState(true), and keep
//                       wait-for-ready calls in flight until every one of N
//                       endpoints has answered one
//   footprint           threads (/proc/self/task) and heap (mallinfo2) added
//                       by K channels of 2 endpoints all serving, and by one
//                       channel of N endpoints all serving; first the first
//                       channel of each kind (process-wide costs included)
#include <dirent.h>
#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include <absl/strings/str_join.h>
#include <grpcpp/grpcpp.h>
#include <lbkit/lbkit.h>
#include <nlohmann/json.hpp>

#include "bench_util.h"
#include "cli.h"
#include "echo.grpc.pb.h"
#include "scenarios.h"

extern char** environ;

namespace lbkit_bench {
namespace {

using Clock = std::chrono::steady_clock;
using grpc::examples::echo::Echo;
using grpc::examples::echo::EchoRequest;
using grpc::examples::echo::EchoResponse;

constexpr const char* kRoundRobinConfig = R"({"loadBalancingConfig":[{"round_robin":{}}]})";
constexpr const char* kBaseline = "native_round_robin";
constexpr int kFootprintEndpointsPerChannel = 2;
// A call's deadline; a measurement that has not finished after kGiveUp fails the run.
constexpr std::chrono::seconds kCallDeadline(10);
constexpr std::chrono::seconds kGiveUp(60);

const std::vector<std::string> kParts = {"first-call", "all-ready", "footprint"};

struct Kind {
  std::string id;
  std::string description;
  bool lbkit = false;
};

// The order of the tables, and of the first round.
const std::vector<Kind> kKinds = {
    {"lbkit_round_robin", "lbkit, round_robin", true},
    {"native_round_robin", "gRPC, round_robin (the baseline)", false},
    {"native_round_robin_2", "gRPC, round_robin again (A/A control)", false},
};
// The footprint needs no A/A control: it counts, it does not time.
const std::vector<Kind> kFootprintKinds = {kKinds[0], kKinds[1]};
// The first channels, in the order they are made: gRPC's own first, so that
// the first lbkit channel's figure holds what lbkit adds to a process that
// already uses gRPC.
const std::vector<Kind> kFirstChannelOrder = {kKinds[1], kKinds[0]};

// ---------------------------------------------------------------------------
// Flags

struct Flags {
  std::vector<std::string> parts = kParts;
  int endpoints = 2;
  int trials = 40;
  std::vector<int> ready_endpoints = {2, 100, 1000};
  int ready_trials = 5;
  int in_flight = 32;
  std::vector<int> footprint_channels = {1, 100, 1000};
  std::vector<int> footprint_endpoints = {100, 1000};
  std::string json_path;
  bool progress = true;

  bool Wants(const std::string& part) const {
    return std::find(parts.begin(), parts.end(), part) != parts.end();
  }
};

void SortUnique(std::vector<int>* v) {
  std::sort(v->begin(), v->end());
  v->erase(std::unique(v->begin(), v->end()), v->end());
}

// Fills `flags` from argv[3..) (argv[1..2] name the scenario): -1 to go on,
// else the status to exit with (--help, a bad flag).
int ParseFlags(int argc, char** argv, Flags* flags) {
  CLI::App app(R"(A new channel's cost, lbkit's round_robin against gRPC's own (and gRPC's again,
an A/A control), backends in child processes on 127.0.0.1: the time to the
first successful call, the time until every one of N endpoints has served a
call, and the threads and heap a channel and an endpoint add.)",
               "lbkit-bench --scenario cold-start");
  AddNames(app, "--parts", &flags->parts, kParts,
           "comma list of first-call,all-ready,footprint (default all)");
  lbkit_example::AddNumber(app, "--endpoints", &flags->endpoints, 1, 1000,
                           "first-call: endpoints of each channel");
  lbkit_example::AddNumber(app, "--trials", &flags->trials, 1, 10000,
                           "first-call: trials per channel");
  lbkit_example::AddNumber(app, "--ready-endpoints", &flags->ready_endpoints, 1, 4000,
                           "all-ready: endpoint counts, a comma list, each served by one child")
      ->delimiter(',');
  lbkit_example::AddNumber(app, "--ready-trials", &flags->ready_trials, 1, 1000,
                           "all-ready: trials per channel and endpoint count");
  lbkit_example::AddNumber(app, "--in-flight", &flags->in_flight, 1, 1000,
                           "all-ready and footprint: wait-for-ready calls kept in flight\n"
                           "(at most 2 per endpoint)");
  lbkit_example::AddNumber(app, "--footprint-channels", &flags->footprint_channels, 1, 2000,
                           "footprint: channel counts, a comma list (2 endpoints each)")
      ->delimiter(',');
  lbkit_example::AddNumber(app, "--footprint-endpoints", &flags->footprint_endpoints, 1, 4000,
                           "footprint: endpoint counts of one channel, a comma list")
      ->delimiter(',');
  AddJsonPath(app, &flags->json_path);
  app.add_flag_callback(
      "--no-progress", [flags] { flags->progress = false; }, "no progress line on stderr");
  if (int status = lbkit_example::ParseCommandLine(app, argc - 2, argv + 2); status >= 0) {
    return status;
  }
  SortUnique(&flags->ready_endpoints);
  SortUnique(&flags->footprint_channels);
  SortUnique(&flags->footprint_endpoints);
  if (flags->parts.empty()) throw UsageError("--parts: name at least one part");
  return -1;
}

void ShowProgress(const Flags& flags, const std::string& line) {
  if (!flags.progress) return;
  std::fprintf(stderr, "\r%-78s", line.c_str());
  std::fflush(stderr);
}

// ---------------------------------------------------------------------------
// The process: file descriptors, threads, heap

int ThreadCount() {
  int count = 0;
  if (DIR* dir = opendir("/proc/self/task")) {
    while (dirent* entry = readdir(dir)) count += entry->d_name[0] != '.';
    closedir(dir);
  }
  return count;
}

// Bytes the application holds from malloc, every arena: in chunks
// (uordblks) and in blocks malloc mapped on their own (hblkhd).
int64_t HeapInUse() {
  const struct mallinfo2 info = mallinfo2();
  return static_cast<int64_t>(info.uordblks + info.hblkhd);
}

int MillisLeft(Clock::time_point deadline) {
  const auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left <= 0 ? 0 : static_cast<int>(std::min<int64_t>(left, INT_MAX));
}

// A poll on a condition, not a synchronization: nothing signals when a
// thread has gone or memory has been freed. True when `done` held before the
// deadline.
template <typename Done>
bool PollUntil(Clock::time_point deadline, std::chrono::milliseconds every, Done done) {
  for (;;) {
    if (done()) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(every);
  }
}

// After a channel is destroyed: waits until at most `threads` threads are
// left, or (at most 10 s) until their count has not changed for 50 ms, as
// when gRPC has grown one of its process-wide pools (its default executor
// starts threads under load and keeps them). An lbkit channel has no
// thread of its own (its control plane runs on lbkit's process-wide pool),
// so this usually returns at once.
void WaitForThreads(int threads) {
  std::vector<int> recent;
  PollUntil(
      Clock::now() + std::chrono::seconds(10), std::chrono::milliseconds(5), [threads, &recent] {
        recent.push_back(ThreadCount());
        if (recent.back() <= threads) return true;
        if (recent.size() > 11) recent.erase(recent.begin());
        return recent.size() == 11 && std::all_of(recent.begin(), recent.end(),
                                                  [&recent](int n) { return n == recent.back(); });
      });
}

// Waits (at most 3 s) until the heap in use has moved less than 16 KB over
// the last 60 ms: gRPC frees a closed connection's and an ended call's memory
// on its own threads, a little after the channel or the call is gone.
void SettleHeap() {
  std::vector<int64_t> recent;
  PollUntil(Clock::now() + std::chrono::seconds(3), std::chrono::milliseconds(20), [&recent] {
    recent.push_back(HeapInUse());
    if (recent.size() > 4) recent.erase(recent.begin());
    const auto [low, high] = std::minmax_element(recent.begin(), recent.end());
    return recent.size() == 4 && *high - *low < 16 * 1024;
  });
}

struct Usage {
  int threads = 0;
  int64_t heap = 0;
  std::map<std::string, ThreadGroup> by_name;
};

Usage MeasureUsage() {
  SettleHeap();
  Usage usage;
  usage.by_name = ThreadsByName();
  for (const auto& [name, group] : usage.by_name) usage.threads += group.count;
  usage.heap = HeapInUse();
  return usage;
}

// What `after` has more (or fewer) of than `before`.
struct Added {
  int threads = 0;
  int64_t heap = 0;
  std::map<std::string, int> threads_by_name;  // non-zero changes only
};

Added Difference(const Usage& before, const Usage& after) {
  Added added;
  added.threads = after.threads - before.threads;
  added.heap = after.heap - before.heap;
  std::set<std::string> names;
  for (const auto& entry : before.by_name) names.insert(entry.first);
  for (const auto& entry : after.by_name) names.insert(entry.first);
  for (const std::string& name : names) {
    auto count = [&name](const Usage& u) {
      auto it = u.by_name.find(name);
      return it == u.by_name.end() ? 0 : it->second.count;
    };
    if (int d = count(after) - count(before); d != 0) added.threads_by_name[name] = d;
  }
  return added;
}

// "lbkit-control +100, grpc_global_tim +1", or "-".
std::string NamesText(const std::map<std::string, int>& by_name) {
  std::vector<std::string> parts;
  for (const auto& [name, d] : by_name) {
    parts.push_back(name + (d > 0 ? " +" : " ") + std::to_string(d));
  }
  return parts.empty() ? "-" : absl::StrJoin(parts, ", ");
}

// ---------------------------------------------------------------------------
// Backends: child processes

// An echo service replying with the address of the server it runs in.
class AddressEcho final : public Echo::CallbackService {
 public:
  // Before any call can arrive: the client learns the port from our stdout
  // only after this.
  void set_label(std::string label) {
    label_ = std::move(label);
    labelled_.store(true, std::memory_order_release);
  }

  grpc::ServerUnaryReactor* UnaryEcho(grpc::CallbackServerContext* context, const EchoRequest*,
                                      EchoResponse* response) override {
    if (labelled_.load(std::memory_order_acquire)) response->set_message(label_);
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

 private:
  std::string label_;
  std::atomic<bool> labelled_{false};
};

// One child: `ports` echo servers, each on 127.0.0.1 and a port of the
// kernel's choice. The child exits when its stdin closes (the destructor
// closes it; so does our death); the destructor also reaps it.
class BackendProcess {
 public:
  explicit BackendProcess(int ports) : ports_(ports) {
    int to_child[2];
    int from_child[2];
    // CLOEXEC: no other child may hold these open (a sibling holding our
    // end of this child's stdin would keep it alive after we close ours).
    if (pipe2(to_child, O_CLOEXEC) != 0) throw std::runtime_error(std::strerror(errno));
    if (pipe2(from_child, O_CLOEXEC) != 0) {
      const int err = errno;
      close(to_child[0]);
      close(to_child[1]);
      throw std::runtime_error(std::strerror(err));
    }
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, to_child[0], STDIN_FILENO);
    posix_spawn_file_actions_adddup2(&actions, from_child[1], STDOUT_FILENO);
    const std::string count = std::to_string(ports);
    std::vector<char*> argv = {
        const_cast<char*>("lbkit-bench"),        const_cast<char*>("--scenario"),
        const_cast<char*>("cold-start-backend"), const_cast<char*>("--ports"),
        const_cast<char*>(count.c_str()),        nullptr};
    const int err = posix_spawn(&pid_, "/proc/self/exe", &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    close(to_child[0]);
    close(from_child[1]);
    to_child_ = to_child[1];
    from_child_ = from_child[0];
    if (err != 0) {
      pid_ = -1;
      Stop();
      throw std::runtime_error(std::string("posix_spawn /proc/self/exe: ") + std::strerror(err));
    }
  }

  BackendProcess(const BackendProcess&) = delete;
  BackendProcess& operator=(const BackendProcess&) = delete;
  ~BackendProcess() { Stop(); }

  // Reads the child's "ports P1 P2 ..." line; throws if it does not come by
  // `deadline`.
  void WaitForPorts(Clock::time_point deadline) {
    std::string text;
    while (text.find('\n') == std::string::npos) {
      const int left = MillisLeft(deadline);
      if (left == 0) throw std::runtime_error(Name() + ": no ports before the deadline");
      pollfd pfd{from_child_, POLLIN, 0};
      const int ready = poll(&pfd, 1, left);
      if (ready < 0 && errno == EINTR) continue;
      if (ready <= 0) continue;  // the deadline check above ends it
      char buf[4096];
      const ssize_t n = read(from_child_, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) throw std::runtime_error(Name() + ": exited before printing its ports");
      text.append(buf, static_cast<size_t>(n));
    }
    std::istringstream line(text.substr(0, text.find('\n')));
    std::string word;
    line >> word;
    int port = 0;
    while (line >> port) addresses_.push_back("127.0.0.1:" + std::to_string(port));
    if (word != "ports" || static_cast<int>(addresses_.size()) != ports_) {
      throw std::runtime_error(Name() + ": unexpected output \"" + text + "\"");
    }
  }

  const std::vector<std::string>& addresses() const { return addresses_; }
  std::string List() const { return absl::StrJoin(addresses_, ","); }

 private:
  std::string Name() const { return "backend child with " + std::to_string(ports_) + " ports"; }

  void Stop() {
    if (to_child_ >= 0) close(to_child_);  // its stdin ends: it exits
    if (from_child_ >= 0) close(from_child_);
    to_child_ = from_child_ = -1;
    if (pid_ <= 0) return;
    const pid_t pid = pid_;
    pid_ = -1;
    const bool exited =
        PollUntil(Clock::now() + std::chrono::seconds(5), std::chrono::milliseconds(5), [pid] {
          int status = 0;
          return waitpid(pid, &status, WNOHANG) != 0;
        });
    if (!exited) {
      kill(pid, SIGKILL);
      int status = 0;
      while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
    }
  }

  const int ports_;
  pid_t pid_ = -1;
  int to_child_ = -1;
  int from_child_ = -1;
  std::vector<std::string> addresses_;
};

// Children by port count, started together (each binds its ports in
// parallel with the others) before anything is measured.
class Backends {
 public:
  explicit Backends(const std::set<int>& sizes) {
    for (int size : sizes) children_[size] = std::make_unique<BackendProcess>(size);
    const Clock::time_point deadline = Clock::now() + std::chrono::seconds(120);
    for (auto& entry : children_) entry.second->WaitForPorts(deadline);
  }
  const BackendProcess& With(int ports) const { return *children_.at(ports); }

 private:
  std::map<int, std::unique_ptr<BackendProcess>> children_;
};

// ---------------------------------------------------------------------------
// Channels

struct TestChannel {
  std::shared_ptr<grpc::ChannelInterface> channel;
  std::shared_ptr<lbkit::Channel> lbkit;  // null for native channels
  std::unique_ptr<Echo::Stub> stub;

  TestChannel() = default;
  TestChannel(const TestChannel&) = delete;
  TestChannel& operator=(const TestChannel&) = delete;
  // lbkit's Shutdown returns once the channel's control-plane work has run
  // (its policy and subchannels released; no thread of its own to end); a
  // native channel's connections close on gRPC's threads after it is
  // released.
  ~TestChannel() {
    stub.reset();
    if (lbkit != nullptr) lbkit->Shutdown();
  }
};

std::unique_ptr<TestChannel> Open(const Kind& kind, const std::string& list,
                                  const std::shared_ptr<grpc::ChannelCredentials>& creds) {
  auto ch = std::make_unique<TestChannel>();
  if (kind.lbkit) {
    lbkit::ChannelOptions options;
    options.default_service_config = kRoundRobinConfig;
    grpc::Status status;
    ch->lbkit = lbkit::CreateChannel("static:///" + list, creds, options, &status);
    if (!status.ok()) throw std::runtime_error(kind.id + ": " + status.error_message());
    ch->channel = ch->lbkit;
  } else {
    grpc::ChannelArguments args;
    // Connections of its own: a later trial never reuses an earlier one's.
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetServiceConfigJSON(kRoundRobinConfig);
    // gRPC's default :authority for "ipv4:a,b,..." is the whole list: 16 KB
    // for 1,000 endpoints, over the server's 8 KB metadata limit (the call
    // fails with RESOURCE_EXHAUSTED) and too long for HPACK to index, so
    // every call would carry it. A name as long as one address instead, as
    // lbkit's subchannels (a grpc::Channel each to "ipv4:a") send.
    args.SetString(GRPC_ARG_DEFAULT_AUTHORITY, list.substr(0, list.find(',')));
    ch->channel = grpc::CreateCustomChannel("ipv4:" + list, creds, args);
  }
  ch->stub = Echo::NewStub(ch->channel);
  return ch;
}

// ---------------------------------------------------------------------------
// Calls until every endpoint has answered

struct Serving {
  Clock::time_point first;  // the first endpoint answered
  Clock::time_point all;    // the last of them answered
  uint64_t calls = 0;       // calls finished, successful or not
  uint64_t failed = 0;
  std::string first_error;
};

// Keeps `in_flight` wait-for-ready unary calls going on `stub` (callback
// API: a finished call starts the next) until each of `addresses` has
// answered one, then waits for the calls still in flight. Throws after
// kGiveUp, or when a call fails. The same method for lbkit and native channels: only the replies
// (the serving server's address) say which endpoint served.
Serving ServeAll(const std::string& what, Echo::Stub* stub,
                 const std::vector<std::string>& addresses, int in_flight) {
  struct State {
    Echo::Stub* stub;
    EchoRequest request;
    std::unordered_set<std::string> expected;
    Clock::time_point give_up;
    std::mutex mu;
    std::condition_variable cv;
    std::unordered_set<std::string> seen;
    int outstanding = 0;
    bool stop = false;
    Serving result;
  };
  struct Call {
    grpc::ClientContext context;
    EchoResponse response;
  };
  auto state = std::make_shared<State>();
  state->stub = stub;
  state->request.set_message("serving?");
  state->expected.insert(addresses.begin(), addresses.end());
  state->give_up = Clock::now() + kGiveUp;

  // Shared by the calls, so that a call finishing after a throw below still
  // finds its state; started with no lock held (a call may finish inline).
  struct Starter {
    static void Start(const std::shared_ptr<State>& s) {
      auto* call = new Call;
      call->context.set_wait_for_ready(true);
      call->context.set_deadline(std::chrono::system_clock::now() + kCallDeadline);
      s->stub->async()->UnaryEcho(
          &call->context, &s->request, &call->response, [s, call](grpc::Status status) {
            const Clock::time_point now = Clock::now();
            bool again = false;
            {
              std::lock_guard<std::mutex> lock(s->mu);
              ++s->result.calls;
              if (!status.ok()) {
                // Not expected of a wait-for-ready call to a live backend
                // within kCallDeadline: the measurement is void. (Going on
                // could also recurse: a call failing at once may call back
                // on the thread that started it.)
                if (s->result.failed++ == 0) {
                  s->result.first_error =
                      std::to_string(status.error_code()) + ": " + status.error_message();
                }
                s->stop = true;
              } else if (s->expected.count(call->response.message()) > 0 &&
                         s->seen.insert(call->response.message()).second) {
                if (s->seen.size() == 1) s->result.first = now;
                if (s->seen.size() == s->expected.size()) {
                  s->result.all = now;
                  s->stop = true;
                }
              }
              again = !s->stop && now < s->give_up;
              if (!again) --s->outstanding;
              s->cv.notify_all();
            }
            delete call;
            if (again) Start(s);
          });
    }
  };
  state->outstanding = in_flight;
  for (int i = 0; i < in_flight; ++i) Starter::Start(state);
  std::unique_lock<std::mutex> lock(state->mu);
  // Every call ends by its deadline, so all have ended kCallDeadline after
  // the last was started.
  if (!state->cv.wait_until(lock, state->give_up + kCallDeadline + std::chrono::seconds(5),
                            [&] { return state->outstanding == 0; })) {
    throw std::runtime_error(what + ": calls still in flight long after their deadline");
  }
  if (state->seen.size() < state->expected.size() || state->result.failed > 0) {
    throw std::runtime_error(what + ": " + std::to_string(state->seen.size()) + " of " +
                             std::to_string(state->expected.size()) + " endpoints answered" +
                             (state->result.failed > 0
                                  ? ", then a call failed: " + state->result.first_error
                                  : " in " + std::to_string(kGiveUp.count()) + " s"));
  }
  return state->result;
}

int CallsInFlight(const Flags& flags, size_t endpoints) {
  return static_cast<int>(std::min<size_t>(static_cast<size_t>(flags.in_flight), 2 * endpoints));
}

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

double Ratio(double value, double baseline) { return baseline > 0 ? value / baseline : 0; }

double Min(const std::vector<double>& v) {
  return v.empty() ? 0 : *std::min_element(v.begin(), v.end());
}
double Max(const std::vector<double>& v) {
  return v.empty() ? 0 : *std::max_element(v.begin(), v.end());
}

// The kinds in round `round`'s order: A B C, B C A, C A B, ...
std::vector<const Kind*> Rotated(const std::vector<Kind>& kinds, int round) {
  std::vector<const Kind*> order;
  for (size_t i = 0; i < kinds.size(); ++i) {
    order.push_back(&kinds[(static_cast<size_t>(round) + i) % kinds.size()]);
  }
  return order;
}

// ---------------------------------------------------------------------------
// 1. Time to first call

nlohmann::json TimeToFirstCall(const Flags& flags, const BackendProcess& backend,
                               const std::shared_ptr<grpc::ChannelCredentials>& creds) {
  std::map<std::string, std::vector<double>> ms;
  EchoRequest request;
  request.set_message("first");
  const std::set<std::string> expected(backend.addresses().begin(), backend.addresses().end());
  for (int trial = 0; trial < flags.trials; ++trial) {
    ShowProgress(flags, "time to first call: trial " + std::to_string(trial + 1) + "/" +
                            std::to_string(flags.trials));
    for (const Kind* kind : Rotated(kKinds, trial)) {
      const int threads = ThreadCount();
      grpc::ClientContext context;
      context.set_wait_for_ready(true);
      context.set_deadline(std::chrono::system_clock::now() + kCallDeadline);
      EchoResponse response;
      const Clock::time_point start = Clock::now();
      std::unique_ptr<TestChannel> ch = Open(*kind, backend.List(), creds);
      const grpc::Status status = ch->stub->UnaryEcho(&context, request, &response);
      const Clock::time_point end = Clock::now();
      if (!status.ok() || expected.count(response.message()) == 0) {
        throw std::runtime_error(kind->id + ": first call: " + status.error_message() +
                                 " (reply \"" + response.message() + "\")");
      }
      ms[kind->id].push_back(Ms(end - start));
      ch.reset();
      // The next trial starts with no thread of this one left.
      WaitForThreads(threads);
    }
  }
  if (flags.progress) std::fprintf(stderr, "\r%-78s\r", "");

  const std::vector<double>& base = ms[kBaseline];
  std::printf(
      "\ntime to first call: create the channel, one wait-for-ready unary call at once; "
      "%d endpoints,\n%d trials per channel in rotated order\n",
      flags.endpoints, flags.trials);
  std::printf("%-22s %8s %8s %8s %8s | %8s %8s\n", "channel", "median", "p90", "min", "max",
              "median/", "p90/");
  std::printf("%-22s %8s %8s %8s %8s | %17s\n", "", "ms", "ms", "ms", "ms", "ratio to native");
  nlohmann::json channels = nlohmann::json::object();
  for (const Kind& kind : kKinds) {
    const std::vector<double>& v = ms[kind.id];
    const double median = Median(v), p90 = Percentile(v, 0.9);
    const double median_ratio = Ratio(median, Median(base));
    const double p90_ratio = Ratio(p90, Percentile(base, 0.9));
    std::printf("%-22s %8.2f %8.2f %8.2f %8.2f | %8.3f %8.3f\n", kind.id.c_str(), median, p90,
                Min(v), Max(v), median_ratio, p90_ratio);
    channels[kind.id] = {{"median_ms", median},
                         {"p90_ms", p90},
                         {"min_ms", Min(v)},
                         {"max_ms", Max(v)},
                         {"median_ratio", median_ratio},
                         {"p90_ratio", p90_ratio},
                         {"trials_ms", v}};
  }
  return {{"endpoints", flags.endpoints}, {"trials", flags.trials}, {"channels", channels}};
}

// ---------------------------------------------------------------------------
// 2. Time to all ready

struct ReadyTrial {
  double all_ms = 0;
  double first_ms = 0;
  uint64_t calls = 0;
  uint64_t failed = 0;
  double cpu_ms = 0;                               // the whole process's
  std::map<std::string, double> cpu_ms_by_thread;  // at least 1 ms
};

ReadyTrial ReadyOnce(const Flags& flags, const Kind& kind, const BackendProcess& backend,
                     const std::shared_ptr<grpc::ChannelCredentials>& creds) {
  const int threads = ThreadCount();
  const std::map<std::string, double> thread_cpu = ThreadCpuSeconds();
  const double cpu = ProcessCpuSeconds();
  const Clock::time_point start = Clock::now();
  std::unique_ptr<TestChannel> ch = Open(kind, backend.List(), creds);
  ch->channel->GetState(/*try_to_connect=*/true);
  const Serving serving = ServeAll(kind.id, ch->stub.get(), backend.addresses(),
                                   CallsInFlight(flags, backend.addresses().size()));
  ReadyTrial trial;
  trial.cpu_ms = (ProcessCpuSeconds() - cpu) * 1000;
  for (const auto& [name, seconds] : ThreadCpuSeconds()) {
    auto before = thread_cpu.find(name);
    const double ms = (seconds - (before == thread_cpu.end() ? 0 : before->second)) * 1000;
    if (ms >= 1) trial.cpu_ms_by_thread[name] = std::round(ms);  // whole ticks of 10 ms
  }
  trial.all_ms = Ms(serving.all - start);
  trial.first_ms = Ms(serving.first - start);
  trial.calls = serving.calls;
  trial.failed = serving.failed;
  ch.reset();
  WaitForThreads(threads);
  return trial;
}

nlohmann::json TimeToAllReady(const Flags& flags, const Backends& backends,
                              const std::shared_ptr<grpc::ChannelCredentials>& creds) {
  std::printf(
      "\ntime to all ready: create the channel, GetState(true), then wait-for-ready calls\n"
      "(%d in flight, at most 2 per endpoint) until every endpoint has answered one;\n"
      "%d trials per channel and endpoint count in rotated order\n",
      flags.in_flight, flags.ready_trials);
  std::printf("%-9s %-22s %8s %8s %8s %8s %8s %8s | %8s\n", "endpoints", "channel", "median", "min",
              "max", "first", "cpu", "calls", "median/");
  std::printf("%-9s %-22s %8s %8s %8s %8s %8s %8s | %8s\n", "", "", "ms", "ms", "ms", "ms", "ms",
              "", "native");
  nlohmann::json results = nlohmann::json::array();
  for (int n : flags.ready_endpoints) {
    const BackendProcess& backend = backends.With(n);
    std::map<std::string, std::vector<ReadyTrial>> trials;
    for (int t = 0; t < flags.ready_trials; ++t) {
      for (const Kind* kind : Rotated(kKinds, t)) {
        ShowProgress(flags, "time to all ready: " + std::to_string(n) + " endpoints, trial " +
                                std::to_string(t + 1) + "/" + std::to_string(flags.ready_trials) +
                                ", " + kind->id);
        trials[kind->id].push_back(ReadyOnce(flags, *kind, backend, creds));
      }
    }
    if (flags.progress) std::fprintf(stderr, "\r%-78s\r", "");
    auto column = [&trials](const std::string& id, double ReadyTrial::*field) {
      std::vector<double> v;
      for (const ReadyTrial& t : trials[id]) v.push_back(t.*field);
      return v;
    };
    const double base = Median(column(kBaseline, &ReadyTrial::all_ms));
    nlohmann::json channels = nlohmann::json::object();
    for (const Kind& kind : kKinds) {
      const std::vector<double> all = column(kind.id, &ReadyTrial::all_ms);
      std::vector<double> calls;
      nlohmann::json raw = nlohmann::json::array();
      for (const ReadyTrial& t : trials[kind.id]) {
        calls.push_back(static_cast<double>(t.calls));
        raw.push_back({{"all_ms", t.all_ms},
                       {"first_ms", t.first_ms},
                       {"calls", t.calls},
                       {"failed_calls", t.failed},
                       {"cpu_ms", t.cpu_ms},
                       {"cpu_ms_by_thread", t.cpu_ms_by_thread}});
      }
      const double first = Median(column(kind.id, &ReadyTrial::first_ms));
      const double cpu = Median(column(kind.id, &ReadyTrial::cpu_ms));
      std::printf("%-9d %-22s %8.1f %8.1f %8.1f %8.2f %8.1f %8.0f | %8.3f\n", n, kind.id.c_str(),
                  Median(all), Min(all), Max(all), first, cpu, Median(calls),
                  Ratio(Median(all), base));
      channels[kind.id] = {{"median_ms", Median(all)},
                           {"min_ms", Min(all)},
                           {"max_ms", Max(all)},
                           {"median_ratio", Ratio(Median(all), base)},
                           {"first_serving_median_ms", first},
                           {"cpu_median_ms", cpu},
                           {"calls_median", Median(calls)},
                           {"trials", raw}};
    }
    results.push_back({{"endpoints", n},
                       {"trials", flags.ready_trials},
                       {"in_flight", CallsInFlight(flags, static_cast<size_t>(n))},
                       {"channels", channels}});
  }
  return results;
}

// ---------------------------------------------------------------------------
// 3. Footprint

nlohmann::json AddedJson(const Added& added) {
  return {{"threads_added", added.threads},
          {"heap_added_bytes", added.heap},
          {"threads_added_by_name", added.threads_by_name}};
}

// `count` channels of `kind` to `backend`, all serving; what they added; then
// gone again (and their threads).
struct Batch {
  Added added;
  double create_ms = 0;   // creating them all (and GetState(true) on each)
  double serving_ms = 0;  // from then until every endpoint of each has answered
  int threads_left = 0;   // threads over the count before, after destroying them
};

Batch MeasureBatch(const Flags& flags, const Kind& kind, int count, const BackendProcess& backend,
                   const std::shared_ptr<grpc::ChannelCredentials>& creds) {
  Batch batch;
  const Usage before = MeasureUsage();
  std::vector<std::unique_ptr<TestChannel>> channels;
  channels.reserve(static_cast<size_t>(count));
  const Clock::time_point start = Clock::now();
  // All connect at once, as a process starting up with many upstreams would.
  for (int i = 0; i < count; ++i) {
    channels.push_back(Open(kind, backend.List(), creds));
    channels.back()->channel->GetState(/*try_to_connect=*/true);
  }
  const Clock::time_point created = Clock::now();
  const int in_flight = CallsInFlight(flags, backend.addresses().size());
  for (auto& ch : channels) ServeAll(kind.id, ch->stub.get(), backend.addresses(), in_flight);
  batch.create_ms = Ms(created - start);
  batch.serving_ms = Ms(Clock::now() - created);
  const Usage after = MeasureUsage();
  batch.added = Difference(before, after);
  channels.clear();
  WaitForThreads(before.threads);
  batch.threads_left = std::max(0, ThreadCount() - before.threads);
  return batch;
}

// What one more channel (or endpoint) adds: the difference between the
// rows with the largest and the smallest count (`count_key`), divided by
// the difference in count. Costs that do not grow with the count cancel
// out: a channel's own fixed cost in the per-endpoint rows, and threads a
// process-wide pool of gRPC's started during one batch and kept.
nlohmann::json Slope(const nlohmann::json& rows, const std::string& count_key,
                     const std::string& unit) {
  const nlohmann::json& low = rows.front();
  const nlohmann::json& high = rows.back();
  const int from = low[count_key].get<int>(), to = high[count_key].get<int>();
  nlohmann::json slope = {{"from", from}, {"to", to}};
  std::printf("per %s between %d and %d:", unit.c_str(), from, to);
  for (const Kind& kind : kFootprintKinds) {
    const nlohmann::json& l = low["channels"][kind.id];
    const nlohmann::json& h = high["channels"][kind.id];
    const double threads =
        static_cast<double>(h["threads_added"].get<int>() - l["threads_added"].get<int>()) /
        (to - from);
    const double heap = static_cast<double>(h["heap_added_bytes"].get<int64_t>() -
                                            l["heap_added_bytes"].get<int64_t>()) /
                        (to - from);
    slope[kind.id] = {{"threads_per_" + unit, threads}, {"heap_per_" + unit + "_bytes", heap}};
    std::printf("  %s %.3f threads, %.2f KB;", kind.id.c_str(), threads, heap / 1024);
  }
  std::printf("\n");
  return slope;
}

nlohmann::json Footprint(const Flags& flags, const Backends& backends,
                         const std::shared_ptr<grpc::ChannelCredentials>& creds,
                         const nlohmann::json& process_wide) {
  nlohmann::json out = {{"process_wide_first_channel", process_wide}};
  std::printf(
      "\nfootprint: threads (/proc/self/task) and heap (glibc mallinfo2: uordblks + hblkhd)\n"
      "added, every endpoint having answered a call; one kind at a time, the first channel\n"
      "of each kind (created at the start, in the order below) still open\n");
  std::printf("\nfirst channel of its kind, %d endpoints, process-wide costs included:\n",
              kFootprintEndpointsPerChannel);
  for (const Kind& kind : kFirstChannelOrder) {
    const nlohmann::json& p = process_wide[kind.id];
    std::printf("  %-22s %+4d threads (%s), %+9.1f KB heap\n", kind.id.c_str(),
                p["threads_added"].get<int>(),
                NamesText(p["threads_added_by_name"].get<std::map<std::string, int>>()).c_str(),
                static_cast<double>(p["heap_added_bytes"].get<int64_t>()) / 1024);
  }

  std::printf("\nper channel: K channels of %d endpoints each\n", kFootprintEndpointsPerChannel);
  std::printf("%-6s %-22s %8s %10s %9s %10s  %s\n", "K", "channel", "threads", "threads/ch",
              "heap MB", "heap/ch KB", "threads added, by name");
  nlohmann::json per_channel = nlohmann::json::array();
  const BackendProcess& pair = backends.With(kFootprintEndpointsPerChannel);
  for (size_t i = 0; i < flags.footprint_channels.size(); ++i) {
    const int k = flags.footprint_channels[i];
    nlohmann::json channels = nlohmann::json::object();
    for (const Kind* kind : Rotated(kFootprintKinds, static_cast<int>(i))) {
      ShowProgress(flags, "footprint: " + std::to_string(k) + " channels, " + kind->id);
      const Batch b = MeasureBatch(flags, *kind, k, pair, creds);
      nlohmann::json j = AddedJson(b.added);
      j["threads_per_channel"] = static_cast<double>(b.added.threads) / k;
      j["heap_per_channel_bytes"] = static_cast<double>(b.added.heap) / k;
      j["create_ms"] = b.create_ms;
      j["all_serving_ms"] = b.serving_ms;
      j["threads_left_after_destroy"] = b.threads_left;
      channels[kind->id] = j;
    }
    if (flags.progress) std::fprintf(stderr, "\r%-78s\r", "");
    for (const Kind& kind : kFootprintKinds) {
      const nlohmann::json& j = channels[kind.id];
      std::printf("%-6d %-22s %+8d %10.3f %9.2f %10.1f  %s\n", k, kind.id.c_str(),
                  j["threads_added"].get<int>(), j["threads_per_channel"].get<double>(),
                  static_cast<double>(j["heap_added_bytes"].get<int64_t>()) / (1 << 20),
                  j["heap_per_channel_bytes"].get<double>() / 1024,
                  NamesText(j["threads_added_by_name"].get<std::map<std::string, int>>()).c_str());
    }
    per_channel.push_back({{"count", k},
                           {"endpoints_per_channel", kFootprintEndpointsPerChannel},
                           {"channels", channels}});
  }
  out["per_channel"] = per_channel;
  if (per_channel.size() >= 2) out["per_channel_slope"] = Slope(per_channel, "count", "channel");

  std::printf("\nper endpoint: one channel of N endpoints\n");
  std::printf("%-6s %-22s %8s %9s %12s  %s\n", "N", "channel", "threads", "heap MB", "heap/ep KB",
              "threads added, by name");
  nlohmann::json per_endpoint = nlohmann::json::array();
  for (size_t i = 0; i < flags.footprint_endpoints.size(); ++i) {
    const int n = flags.footprint_endpoints[i];
    nlohmann::json channels = nlohmann::json::object();
    for (const Kind* kind : Rotated(kFootprintKinds, static_cast<int>(i))) {
      ShowProgress(flags,
                   "footprint: 1 channel of " + std::to_string(n) + " endpoints, " + kind->id);
      const Batch b = MeasureBatch(flags, *kind, 1, backends.With(n), creds);
      nlohmann::json j = AddedJson(b.added);
      j["threads_per_endpoint"] = static_cast<double>(b.added.threads) / n;
      j["heap_per_endpoint_bytes"] = static_cast<double>(b.added.heap) / n;
      j["all_serving_ms"] = b.create_ms + b.serving_ms;
      j["threads_left_after_destroy"] = b.threads_left;
      channels[kind->id] = j;
    }
    if (flags.progress) std::fprintf(stderr, "\r%-78s\r", "");
    for (const Kind& kind : kFootprintKinds) {
      const nlohmann::json& j = channels[kind.id];
      std::printf("%-6d %-22s %+8d %9.2f %12.2f  %s\n", n, kind.id.c_str(),
                  j["threads_added"].get<int>(),
                  static_cast<double>(j["heap_added_bytes"].get<int64_t>()) / (1 << 20),
                  j["heap_per_endpoint_bytes"].get<double>() / 1024,
                  NamesText(j["threads_added_by_name"].get<std::map<std::string, int>>()).c_str());
    }
    per_endpoint.push_back({{"endpoints", n}, {"channels", channels}});
  }
  out["per_endpoint"] = per_endpoint;
  if (per_endpoint.size() >= 2)
    out["per_endpoint_slope"] = Slope(per_endpoint, "endpoints", "endpoint");
  int left = 0;
  for (const nlohmann::json& group : {per_channel, per_endpoint}) {
    for (const nlohmann::json& row : group) {
      for (const auto& entry : row["channels"].items()) {
        left = std::max(left, entry.value()["threads_left_after_destroy"].get<int>());
      }
    }
  }
  if (left > 0) {
    std::printf(
        "note: up to %d thread(s) more than before a batch were left after it (gRPC's pools\n"
        "grow under load and keep their threads; see threads_left_after_destroy); each\n"
        "batch counts only what it adds\n",
        left);
  }
  return out;
}

// The first channel of each kind, in kFirstChannelOrder, made to serve:
// what the process gained with it. The first native channel also starts
// gRPC itself; the first lbkit channel lbkit's process-wide threads.
nlohmann::json FirstChannels(const Backends& backends, const Flags& flags,
                             std::shared_ptr<grpc::ChannelCredentials>* creds,
                             std::vector<std::unique_ptr<TestChannel>>* keep) {
  const BackendProcess& pair = backends.With(kFootprintEndpointsPerChannel);
  nlohmann::json out = nlohmann::json::object();
  Usage before = MeasureUsage();
  for (const Kind& kind : kFirstChannelOrder) {
    ShowProgress(flags, "first channel: " + kind.id);
    if (*creds == nullptr) *creds = grpc::InsecureChannelCredentials();
    keep->push_back(Open(kind, pair.List(), *creds));
    keep->back()->channel->GetState(/*try_to_connect=*/true);
    ServeAll(kind.id, keep->back()->stub.get(), pair.addresses(),
             CallsInFlight(flags, pair.addresses().size()));
    const Usage after = MeasureUsage();
    out[kind.id] = AddedJson(Difference(before, after));
    before = after;
  }
  if (flags.progress) std::fprintf(stderr, "\r%-78s\r", "");
  return out;
}

}  // namespace

int RunColdStart(int argc, char** argv) {
  Flags flags;
  if (int status = ParseFlags(argc, argv, &flags); status >= 0) return status;
  RaiseFileLimit();

  std::set<int> sizes = {kFootprintEndpointsPerChannel};
  if (flags.Wants("first-call")) sizes.insert(flags.endpoints);
  if (flags.Wants("all-ready"))
    sizes.insert(flags.ready_endpoints.begin(), flags.ready_endpoints.end());
  if (flags.Wants("footprint")) {
    sizes.insert(flags.footprint_endpoints.begin(), flags.footprint_endpoints.end());
  }
  ShowProgress(flags, "starting backend children");
  Backends backends(sizes);

  std::printf(
      "cold start: lbkit's channel against gRPC's own (native_round_robin_2: gRPC's again,\n"
      "an A/A control), round_robin; backends in %zu child processes on 127.0.0.1\n",
      sizes.size());
  // Before anything else touches gRPC in this process: the first channels
  // carry the process-wide costs, and stay open to the end so that no later
  // figure does.
  std::shared_ptr<grpc::ChannelCredentials> creds;
  std::vector<std::unique_ptr<TestChannel>> first_channels;
  const nlohmann::json process_wide = FirstChannels(backends, flags, &creds, &first_channels);

  nlohmann::json channels = nlohmann::json::object();
  for (const Kind& kind : kKinds) channels[kind.id] = {{"description", kind.description}};
  nlohmann::json out = {{"scenario", "cold-start"},
                        {"settings",
                         {{"parts", flags.parts},
                          {"endpoints", flags.endpoints},
                          {"trials", flags.trials},
                          {"ready_endpoints", flags.ready_endpoints},
                          {"ready_trials", flags.ready_trials},
                          {"in_flight", flags.in_flight},
                          {"footprint_channels", flags.footprint_channels},
                          {"footprint_endpoints", flags.footprint_endpoints},
                          {"call_deadline_s", kCallDeadline.count()}}},
                        {"channels", channels}};
  if (flags.Wants("first-call")) {
    out["time_to_first_call"] = TimeToFirstCall(flags, backends.With(flags.endpoints), creds);
  }
  if (flags.Wants("all-ready")) out["time_to_all_ready"] = TimeToAllReady(flags, backends, creds);
  if (flags.Wants("footprint")) {
    out["footprint"] = Footprint(flags, backends, creds, process_wide);
  } else {
    out["footprint"] = {{"process_wide_first_channel", process_wide}};
  }
  std::fflush(stdout);
  first_channels.clear();

  if (!flags.json_path.empty()) {
    std::ofstream file(flags.json_path);
    file << out.dump(2) << "\n";
    file.close();
    if (!file) {
      std::cerr << "lbkit-bench: cannot write " << flags.json_path << "\n";
      return 1;
    }
  }
  return 0;
}

// The child: `--ports N` echo servers, "ports P1 P2 ...\n" on stdout, then
// serving until stdin closes.
int RunColdStartBackend(int argc, char** argv) {
  int ports = 1;
  CLI::App app("cold-start's backend child (started by lbkit-bench --scenario cold-start)",
               "lbkit-bench --scenario cold-start-backend");
  lbkit_example::AddNumber(app, "--ports", &ports, 1, 4000, "echo servers, one port each");
  if (int status = lbkit_example::ParseCommandLine(app, argc - 2, argv + 2); status >= 0) {
    return status;
  }
  // Dies with the thread that spawned it (the parent's main thread), should
  // stdin somehow stay open.
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  RaiseFileLimit();
  // One server per port, so that a reply can name the port that served it
  // (a handler cannot see which of its server's ports a call came in on).
  // Callback services: no threads per server.
  std::vector<std::unique_ptr<AddressEcho>> services;
  std::vector<std::unique_ptr<grpc::Server>> servers;
  std::string line = "ports";
  for (int i = 0; i < ports; ++i) {
    services.push_back(std::make_unique<AddressEcho>());
    grpc::ServerBuilder builder;
    builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(services.back().get());
    servers.push_back(builder.BuildAndStart());
    if (servers.back() == nullptr || port == 0) {
      std::cerr << "lbkit-bench cold-start-backend: cannot listen on 127.0.0.1:0\n";
      return 1;
    }
    services.back()->set_label("127.0.0.1:" + std::to_string(port));
    line += " " + std::to_string(port);
  }
  line += "\n";
  if (write(STDOUT_FILENO, line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
    return 1;
  }
  char buf[64];
  for (;;) {
    const ssize_t n = read(STDIN_FILENO, buf, sizeof buf);
    if (n > 0 || (n < 0 && errno == EINTR)) continue;
    break;
  }
  // Nothing to save: skip the orderly shutdown of every server.
  std::_Exit(0);
}

}  // namespace lbkit_bench
