// lbkit-chaos: a chaos soak of lbkit's channel next to gRPC C++'s own.
//
// It starts --backends lbkit-echo-server processes on ephemeral 127.0.0.1
// ports and runs --threads sync unary Echo callers on each of two channels,
// both round_robin over the same backends:
//
//   lbkit   lbkit::CreateChannel("static:///a,b,...")
//   native  grpc::CreateCustomChannel("ipv4:a,b,...")
//
// Backends are real child processes, so a kill is a real kill: sockets reset,
// the port is free, and the restart binds the same port again (a channel's
// address list is fixed, so a backend must come back where it was).
//
// Phase 1 (the first 2/3 of --duration) makes wait-for-ready calls; phase 2
// (the last 1/3) fail-fast ones. Throughout, every 100-700 ms a random backend
// gets --signal and comes back 100-1000 ms later; at least one stays up. Once,
// ending when 80% of phase 1 has passed, every backend is down for
// --all-down-ms, which is shorter than the call deadline: a wait-for-ready
// call should ride that out.
//
// gRPC's own channel is the floor (design.md, rule 5): the run fails when
// lbkit loses more wait-for-ready calls in phase 1 than native does, leaving
// out on both sides the calls lost in flight (reset with their connection, or
// cancelled by a stopping server: no channel can save those, and their number
// follows how many calls happened to be in flight, so comparing raw totals
// would be a coin toss). What is left is calls stranded until their deadline
// or failed by a picker. A caller pauses 10 ms after a failure (see Caller).
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <absl/strings/str_cat.h>
#include <absl/strings/str_split.h>
#include <grpcpp/grpcpp.h>
#include <lbkit/lbkit.h>
#include <nlohmann/json.hpp>

#include "cli.h"
#include "echo.grpc.pb.h"

namespace {

using Clock = std::chrono::steady_clock;
using grpc::examples::echo::Echo;
using std::chrono::milliseconds;

constexpr const char* kRoundRobinConfig = R"({"loadBalancingConfig":[{"round_robin":{}}]})";
constexpr const char* kChannelNames[2] = {"lbkit", "native"};
constexpr const char* kPhaseNames[2] = {"wait-for-ready", "fail-fast"};

const char kDescription[] =
    R"(Kills and restarts echo backends (child processes) under load from lbkit's
round_robin channel and gRPC's native one, and compares the calls they lose.
Phase 1 (2/3 of the time): wait-for-ready calls, with random kills and once
every backend down for --all-down-ms, ending at 80% of the phase. Phase 2
(1/3): fail-fast calls, random kills only.

Exit status: 0 lbkit lost no more wait-for-ready calls than native (plus
--tolerate) in phase 1, not counting calls lost in flight (reset with their
connection by a kill, or cancelled by a server stopping on SIGTERM: both
channels lose those, in proportion to their calls in flight); 1 it lost more;
2 bad flags; 3 the run itself failed (e.g. a backend would not start).)";

class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct Flags {
  int backends = 4;
  int threads = 8;
  int duration_s = 15;
  int deadline_ms = 5000;
  int all_down_ms = 2000;
  int tolerate = 0;
  int signal = SIGKILL;
  uint64_t seed = 0;
  bool seed_given = false;
  std::string server;
  std::string json_path;
  bool verbose = false;
};

// Fills `f`: -1 to go on, else the status to exit with (--help, a bad flag).
int ParseFlags(int argc, char** argv, Flags* f) {
  CLI::App app(kDescription, "lbkit-chaos");
  lbkit_example::AddNumber(app, "--backends", &f->backends, 2, 64, "echo server processes");
  lbkit_example::AddNumber(app, "--threads", &f->threads, 1, 256, "callers per channel");
  lbkit_example::AddNumber(app, "--duration", &f->duration_s, 3, 86400, "seconds in all");
  lbkit_example::AddNumber(app, "--deadline-ms", &f->deadline_ms, 100, 600000, "per-call deadline");
  lbkit_example::AddNumber(app, "--all-down-ms", &f->all_down_ms, 0, 600000,
                           "every backend down this long in phase 1 (0: never; must be below\n"
                           "--deadline-ms)");
  lbkit_example::AddNumber(app, "--tolerate", &f->tolerate, 0, 1000000,
                           "pass while lbkit loses at most N more wait-for-ready calls than\n"
                           "native; see docs/queued-calls.md, \"The window that remains\"");
  std::string signal = "KILL";
  app.add_option("--signal", signal, "signal for kills")
      ->check(CLI::IsMember({"KILL", "SIGKILL", "TERM", "SIGTERM"}))
      ->capture_default_str();
  app.add_option_function<uint64_t>(
         "--seed",
         [f](uint64_t seed) {
           f->seed = seed;
           f->seed_given = true;
         },
         "chaos schedule seed (default: random; always printed)")
      ->check(CLI::Range(uint64_t{0}, static_cast<uint64_t>(LLONG_MAX)));
  app.add_option("--server", f->server,
                 "lbkit-echo-server binary (default: next to this binary,\n"
                 "../examples/customloadbalancing/, then PATH)");
  app.add_option("--json", f->json_path, "also write the numbers as JSON to FILE")
      ->type_name("FILE")
      ->check(lbkit_example::NonEmpty("file name"));
  app.add_flag("--verbose", f->verbose, "log every kill and restart on stderr");
  // Before any child exists.
  if (int status = lbkit_example::ParseCommandLine(app, argc, argv); status >= 0) return status;

  f->signal = signal == "KILL" || signal == "SIGKILL" ? SIGKILL : SIGTERM;
  // A wait-for-ready call must be able to outlast the outage, or losing it
  // says nothing about the channel.
  if (f->all_down_ms >= f->deadline_ms) {
    throw UsageError("--all-down-ms " + std::to_string(f->all_down_ms) +
                     " must be below --deadline-ms " + std::to_string(f->deadline_ms));
  }
  // The outage ends at 80% of phase 1 and needs a second of chaos before it.
  long long phase1_ms = f->duration_s * 2000LL / 3;
  if (f->all_down_ms > 0 && phase1_ms * 8 / 10 - f->all_down_ms < 1000) {
    throw UsageError("--all-down-ms " + std::to_string(f->all_down_ms) + " does not fit in a " +
                     std::to_string(phase1_ms) + " ms phase 1; raise --duration");
  }
  return -1;
}

bool Executable(const std::string& path) { return access(path.c_str(), X_OK) == 0; }

// The flag, else where a build tree or an install puts the server, else PATH.
std::string FindServer(const std::string& flag) {
  if (!flag.empty()) {
    if (!Executable(flag)) throw UsageError("--server " + flag + ": not an executable file");
    return flag;
  }
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n > 0) {
    std::string dir(self, static_cast<size_t>(n));
    dir.resize(dir.rfind('/'));
    for (const char* rel : {"/../examples/customloadbalancing/", "/"}) {
      std::string candidate = dir + rel + "lbkit-echo-server";
      if (Executable(candidate)) return candidate;
    }
  }
  const char* path = std::getenv("PATH");
  for (absl::string_view dir :
       absl::StrSplit(path != nullptr ? path : "", ':', absl::SkipEmpty())) {
    std::string candidate = absl::StrCat(dir, "/lbkit-echo-server");
    if (Executable(candidate)) return candidate;
  }
  throw UsageError("cannot find lbkit-echo-server; pass --server PATH");
}

int MillisLeft(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
  return left <= 0 ? 0 : static_cast<int>(std::min<long long>(left, INT_MAX));
}

// ---------------------------------------------------------------------------
// Backends: lbkit-echo-server child processes, each owning one port for life.

class Backends {
 public:
  Backends(std::string server, bool verbose) : server_(std::move(server)), verbose_(verbose) {}
  // Every exit path, exceptions included, ends every child.
  ~Backends() { StopAll(); }

  // A free loopback port: bind port 0, read it back, close. Another process
  // could take it before the server binds; Start retries, then gives up.
  void Add() {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    bool ok = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
              getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
    int err = errno;
    close(fd);
    if (!ok) throw std::runtime_error(std::string("bind 127.0.0.1:0: ") + std::strerror(err));
    children_.push_back(Child{ntohs(addr.sin_port), -1, -1});
  }

  size_t size() const { return children_.size(); }
  bool up(size_t i) const { return children_[i].pid > 0; }
  std::string address(size_t i) const { return "127.0.0.1:" + std::to_string(children_[i].port); }
  std::string AddressList() const {
    std::string list;
    for (size_t i = 0; i < size(); ++i) list += (i == 0 ? "" : ",") + address(i);
    return list;
  }

  // Starts backend i on its port and returns once it says "serving on". The
  // port may still be held for a moment (a client's socket, a slow exit), so
  // a failed start is retried until a 10 s deadline.
  void Start(size_t i) {
    const Clock::time_point deadline = Clock::now() + std::chrono::seconds(10);
    std::string error;
    for (int attempt = 1; attempt <= 5; ++attempt) {
      if (StartOnce(i, deadline, &error)) return;
      if (verbose_) {
        std::fprintf(stderr, "  start %s failed: %s\n", address(i).c_str(), error.c_str());
      }
      if (MillisLeft(deadline) == 0) break;
      // A back-off before retrying a bind, not a wait for an event.
      std::this_thread::sleep_for(milliseconds(50 * attempt));
    }
    throw std::runtime_error("cannot start lbkit-echo-server on " + address(i) + ": " + error);
  }

  // Sends `sig`, waits for the child to exit (its pipe closes) until
  // `deadline`, then SIGKILLs it, and reaps it: the port is free afterwards.
  void Stop(size_t i, int sig, Clock::time_point deadline) {
    Child& c = children_[i];
    if (c.pid <= 0) return;
    kill(c.pid, sig);
    std::string ignored;
    if (ReadUntil(c.out_fd, "", deadline, &ignored) != Read::kEof) kill(c.pid, SIGKILL);
    Reap(c);
  }

  // SIGTERM to all at once, then 5 s for all of them together.
  void StopAll() {
    for (Child& c : children_) {
      if (c.pid > 0) kill(c.pid, SIGTERM);
    }
    const Clock::time_point deadline = Clock::now() + std::chrono::seconds(5);
    for (size_t i = 0; i < size(); ++i) Stop(i, SIGTERM, deadline);
  }

 private:
  struct Child {
    int port;
    pid_t pid;   // > 0 while running
    int out_fd;  // read end of its stdout and stderr
  };

  enum class Read { kFound, kEof, kTimeout };
  // Reads `fd` into *out until a line equal to `line` arrives (never, when
  // empty), EOF or `deadline`.
  static Read ReadUntil(int fd, const std::string& line, Clock::time_point deadline,
                        std::string* out) {
    char buf[4096];
    for (;;) {
      if (!line.empty() && ("\n" + *out).find("\n" + line + "\n") != std::string::npos) {
        return Read::kFound;
      }
      pollfd p{fd, POLLIN, 0};
      int r = poll(&p, 1, MillisLeft(deadline));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) return Read::kTimeout;
      ssize_t n = read(fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return Read::kEof;
      out->append(buf, static_cast<size_t>(n));
    }
  }

  static void Reap(Child& c) {
    int status = 0;
    while (waitpid(c.pid, &status, 0) < 0 && errno == EINTR) {
    }
    close(c.out_fd);
    c.pid = -1;
    c.out_fd = -1;
  }

  bool StartOnce(size_t i, Clock::time_point deadline, std::string* error) {
    Child& c = children_[i];
    std::string addrs = address(i);
    // Built before fork: the child may only make async-signal-safe calls.
    std::vector<char*> argv = {const_cast<char*>(server_.c_str()), const_cast<char*>("--addrs"),
                               const_cast<char*>(addrs.c_str()), nullptr};
    int fds[2];
    // CLOEXEC, so that no other child holds this pipe open and hides an exit.
    if (pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error(std::strerror(errno));
    const pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
      int err = errno;
      close(fds[0]);
      close(fds[1]);
      throw std::runtime_error(std::string("fork: ") + std::strerror(err));
    }
    if (pid == 0) {
      // Dies with us, however we die. (PDEATHSIG follows the forking thread:
      // only the main thread forks, and it lives until the end.)
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(127);
      dup2(fds[1], STDOUT_FILENO);
      dup2(fds[1], STDERR_FILENO);
      execv(argv[0], argv.data());
      _exit(127);
    }
    close(fds[1]);
    c.pid = pid;
    c.out_fd = fds[0];
    // Ready when it prints "serving on 127.0.0.1:PORT" (server/main.cc).
    std::string output;
    Read result = ReadUntil(c.out_fd, "serving on " + addrs, deadline, &output);
    if (result == Read::kFound) return true;
    *error = result == Read::kTimeout ? "no \"serving on\" line before the deadline" : "exited";
    while (!output.empty() && output.back() == '\n') output.pop_back();
    if (!output.empty()) *error += ": " + output.substr(output.rfind('\n') + 1);
    Stop(i, SIGKILL, Clock::now() + milliseconds(1000));
    return false;
  }

  std::string server_;
  bool verbose_;
  std::vector<Child> children_;
};

// ---------------------------------------------------------------------------
// Calls and their numbers

struct PhaseStats {
  std::vector<uint32_t> latency_us;  // every call, OK or not
  uint64_t ok = 0;
  uint64_t over_1s = 0;
  struct Kind {
    uint64_t count = 0;
    double first_s = 1e18;  // when the first such call started, from the chaos start
  };
  std::map<std::pair<int, std::string>, Kind> failures;  // by (code, message)

  uint64_t failed(bool in_flight_only = false) const;
  void Merge(const PhaseStats& o) {
    latency_us.insert(latency_us.end(), o.latency_us.begin(), o.latency_us.end());
    ok += o.ok;
    over_1s += o.over_1s;
    for (const auto& f : o.failures) {
      Kind& k = failures[f.first];
      k.count += f.second.count;
      k.first_s = std::min(k.first_s, f.second.first_s);
    }
  }
};

const char* CodeName(int code) {
  // clang-format off
  static const char* const kNames[] = {
      "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
      "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
      "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
      "UNAUTHENTICATED"};
  // clang-format on
  return code >= 0 && code <= 16 ? kNames[code] : "?";
}

// A call already sent on a connection that then broke: gRPC's transport fails
// it with UNAVAILABLE and a bare socket error, wait-for-ready or not, and no
// balancer can save it (its request may have been processed). Under SIGTERM
// the server's shutdown cancels the calls it holds: CANCELLED, with gRPC's
// bare "CANCELLED" (this tool never cancels, and lbkit's own CANCELLED
// messages say more). Every channel loses a few such calls per kill, in
// proportion to its calls in flight, so they are counted apart and the
// verdict leaves them out. The whole message must be the bare error
// ("recvmsg:" and the like may lead): a picker's failure quotes such an
// error too, and that one counts.
bool LostInFlight(int code, std::string message) {
  if (code == grpc::StatusCode::CANCELLED) return message == "CANCELLED";
  if (code != grpc::StatusCode::UNAVAILABLE) return false;
  size_t colon = message.find(':');
  if (colon != std::string::npos && message.find(' ') > colon) message.erase(0, colon + 1);
  message.erase(0, message.find_first_not_of(' '));
  for (const char* socket_error : {"Connection reset by peer", "Broken pipe", "Socket closed",
                                   "FD shutdown", "Connection aborted"}) {
    if (message == socket_error) return true;
  }
  return false;
}

uint64_t PhaseStats::failed(bool in_flight_only) const {
  uint64_t n = 0;
  for (const auto& f : failures) {
    if (!in_flight_only || LostInFlight(f.first.first, f.first.second)) n += f.second.count;
  }
  return n;
}

// One caller: back-to-back unary calls on `stub`, wait-for-ready while the
// shared phase is 0. A call counts in the phase it started in.
void Caller(Echo::Stub* stub, Clock::time_point t0, const std::atomic<int>* phase,
            const std::atomic<bool>* stop, milliseconds deadline, PhaseStats out[2]) {
  grpc::examples::echo::EchoRequest request;
  request.set_message("chaos");
  while (!stop->load(std::memory_order_relaxed)) {
    const int p = phase->load();
    grpc::ClientContext context;
    context.set_wait_for_ready(p == 0);
    context.set_deadline(std::chrono::system_clock::now() + deadline);
    grpc::examples::echo::EchoResponse response;
    const Clock::time_point start = Clock::now();
    grpc::Status status = stub->UnaryEcho(&context, request, &response);
    auto us = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count();
    out[p].latency_us.push_back(static_cast<uint32_t>(std::min<long long>(us, UINT32_MAX)));
    if (us > 1000000) ++out[p].over_1s;
    if (status.ok()) {
      ++out[p].ok;
    } else {
      auto& kind = out[p].failures[{status.error_code(), status.error_message().substr(0, 120)}];
      if (kind.count++ == 0) kind.first_s = std::chrono::duration<double>(start - t0).count();
      // A fail-fast failure takes microseconds: without a pause a caller
      // spins, its count measures how fast it spins, and it takes the 2 cores
      // the backends and the other channel need. Pacing, not synchronization.
      std::this_thread::sleep_for(milliseconds(10));
    }
  }
}

// Joins every caller on every exit path: a joinable std::thread would abort.
struct Callers {
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  ~Callers() { Join(); }
  void Join() {
    stop = true;
    for (std::thread& t : threads) {
      if (t.joinable()) t.join();
    }
  }
};

double PercentileMs(std::vector<uint32_t>& v, double q) {
  if (v.empty()) return 0;
  size_t rank = std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(rank), v.end());
  return v[rank] / 1000.0;
}

nlohmann::json Report(PhaseStats& s, const char* channel) {
  const uint64_t calls = s.latency_us.size();
  nlohmann::json j = {{"calls", calls},
                      {"ok", s.ok},
                      {"failed", s.failed()},
                      {"lost_in_flight", s.failed(true)},
                      {"p50_ms", PercentileMs(s.latency_us, 0.50)},
                      {"p99_ms", PercentileMs(s.latency_us, 0.99)},
                      {"max_ms", PercentileMs(s.latency_us, 1.0)},
                      {"over_1s", s.over_1s},
                      {"failures", nlohmann::json::array()}};
  using ull = unsigned long long;
  std::printf("  %-7s %8llu %8llu %7llu %9llu %8.1f %8.1f %8.1f %5llu\n", channel, ull{calls},
              ull{s.ok}, ull{s.failed()}, ull{s.failed(true)}, j["p50_ms"].get<double>(),
              j["p99_ms"].get<double>(), j["max_ms"].get<double>(), ull{s.over_1s});
  std::vector<std::pair<PhaseStats::Kind, std::pair<int, std::string>>> kinds;
  for (const auto& f : s.failures) kinds.push_back({f.second, f.first});
  std::sort(kinds.begin(), kinds.end(),
            [](const auto& a, const auto& b) { return a.first.count > b.first.count; });
  for (const auto& k : kinds) {
    j["failures"].push_back({{"code", CodeName(k.second.first)},
                             {"message", k.second.second},
                             {"count", k.first.count},
                             {"first_at_s", k.first.first_s}});
  }
  for (size_t i = 0; i < kinds.size() && i < 5; ++i) {
    std::printf("      %6llu x %s: %s (first at %.2f s)\n", ull{kinds[i].first.count},
                CodeName(kinds[i].second.first), kinds[i].second.second.c_str(),
                kinds[i].first.first_s);
  }
  if (kinds.size() > 5) std::printf("      (%zu more kinds)\n", kinds.size() - 5);
  return j;
}

// ---------------------------------------------------------------------------

int Run(const Flags& flags, const std::string& server) {
  const uint64_t seed = flags.seed_given ? flags.seed : std::random_device{}();
  std::mt19937_64 rng(seed);
  auto uniform_ms = [&rng](int lo, int hi) {
    return milliseconds(std::uniform_int_distribution<int>(lo, hi)(rng));
  };
  const milliseconds total(flags.duration_s * 1000LL);
  const milliseconds phase1(flags.duration_s * 2000LL / 3);
  const milliseconds all_down(flags.all_down_ms);
  const char* signame = flags.signal == SIGKILL ? "KILL" : "TERM";
  std::printf(
      "lbkit-chaos: %d backends, %d callers per channel, deadline %d ms, %d s "
      "(phase 1 wait-for-ready %.1f s, phase 2 fail-fast %.1f s), SIG%s, all down %d ms, "
      "seed %llu, gRPC %s\n",
      flags.backends, flags.threads, flags.deadline_ms, flags.duration_s, phase1.count() / 1e3,
      (total - phase1).count() / 1e3, signame, flags.all_down_ms,
      static_cast<unsigned long long>(seed), grpc::Version().c_str());
  std::fflush(stdout);

  Backends backends(server, flags.verbose);
  for (int i = 0; i < flags.backends; ++i) backends.Add();
  for (size_t i = 0; i < backends.size(); ++i) backends.Start(i);

  auto creds = grpc::InsecureChannelCredentials();
  lbkit::ChannelOptions options;
  options.default_service_config = kRoundRobinConfig;
  grpc::Status status;
  std::shared_ptr<grpc::ChannelInterface> channels[2];
  channels[0] =
      lbkit::CreateChannel("static:///" + backends.AddressList(), creds, options, &status);
  if (!status.ok()) throw std::runtime_error("lbkit::CreateChannel: " + status.error_message());
  grpc::ChannelArguments args;
  // Connections of its own, as each lbkit subchannel has: the two channels
  // must not share a TCP connection, or one would see the other's recovery.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetLoadBalancingPolicyName("round_robin");
  channels[1] = grpc::CreateCustomChannel("ipv4:" + backends.AddressList(), creds, args);
  std::unique_ptr<Echo::Stub> stubs[2];
  for (int c = 0; c < 2; ++c) {
    stubs[c] = Echo::NewStub(channels[c]);
    if (!channels[c]->WaitForConnected(std::chrono::system_clock::now() +
                                       std::chrono::seconds(10))) {
      throw std::runtime_error(std::string(kChannelNames[c]) + " channel not READY within 10 s");
    }
    for (size_t i = 0; i < 2 * backends.size(); ++i) {  // warm-up: every backend reached
      grpc::ClientContext context;
      context.set_wait_for_ready(true);
      context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
      grpc::examples::echo::EchoRequest request;
      grpc::examples::echo::EchoResponse response;
      grpc::Status s = stubs[c]->UnaryEcho(&context, request, &response);
      if (!s.ok()) {
        throw std::runtime_error(std::string(kChannelNames[c]) +
                                 " warm-up call failed: " + s.error_message());
      }
    }
  }

  // Callers: flags.threads per channel, stats[channel][thread][phase].
  std::atomic<int> phase{0};
  std::vector<std::vector<std::array<PhaseStats, 2>>> stats(
      2, std::vector<std::array<PhaseStats, 2>>(static_cast<size_t>(flags.threads)));
  Callers callers;
  const Clock::time_point t0 = Clock::now();
  for (int c = 0; c < 2; ++c) {
    for (auto& s : stats[c]) {
      callers.threads.emplace_back(Caller, stubs[c].get(), t0, &phase, &callers.stop,
                                   milliseconds(flags.deadline_ms), s.data());
    }
  }

  // The chaos schedule, run by this thread (the one that forks children).
  const Clock::time_point phase1_end = t0 + phase1, end = t0 + total;
  const Clock::time_point down_at = t0 + phase1 * 8 / 10 - all_down;
  const Clock::time_point never = Clock::time_point::max();
  enum { kBefore, kDown, kDone } outage = flags.all_down_ms > 0 ? kBefore : kDone;
  std::vector<Clock::time_point> restart_at(backends.size(), never);
  Clock::time_point next_kill = t0 + uniform_ms(100, 700);
  int kills = 0, restarts = 0;
  auto log = [&](const std::string& what) {
    if (!flags.verbose) return;
    double at = std::chrono::duration<double>(Clock::now() - t0).count();
    std::fprintf(stderr, "[%7.3fs] %s\n", at, what.c_str());
  };
  auto restart = [&](size_t i) {
    backends.Start(i);
    restart_at[i] = never;
    ++restarts;
    log("restarted " + backends.address(i));
  };
  for (;;) {
    Clock::time_point now = Clock::now();
    if (phase.load() == 0 && now >= phase1_end) {
      phase = 1;
      log("phase 2: fail-fast calls");
    }
    if (now >= end) break;
    if (outage == kBefore && now >= down_at) {
      for (size_t i = 0; i < backends.size(); ++i) {
        backends.Stop(i, flags.signal, Clock::now() + milliseconds(5000));
        restart_at[i] = never;
      }
      outage = kDown;
      log("all backends down");
    } else if (outage == kDown) {
      if (now >= down_at + all_down) {
        for (size_t i = 0; i < backends.size(); ++i) restart(i);
        outage = kDone;
        next_kill = Clock::now() + uniform_ms(100, 700);
      }
    } else {
      for (size_t i = 0; i < backends.size(); ++i) {
        if (now >= restart_at[i]) restart(i);
      }
      if (now >= next_kill) {
        std::vector<size_t> up;
        for (size_t i = 0; i < backends.size(); ++i) {
          if (backends.up(i)) up.push_back(i);
        }
        if (up.size() >= 2) {  // always leave one up
          size_t i = up[std::uniform_int_distribution<size_t>(0, up.size() - 1)(rng)];
          backends.Stop(i, flags.signal, Clock::now() + milliseconds(5000));
          restart_at[i] = Clock::now() + uniform_ms(100, 1000);
          ++kills;
          log(std::string("SIG") + signame + " " + backends.address(i));
        }
        next_kill = Clock::now() + uniform_ms(100, 700);
      }
    }
    // Sleep to the next scheduled event (this is the schedule, not a wait
    // for something to happen).
    Clock::time_point wake = std::min(end, phase.load() == 0 ? phase1_end : end);
    if (outage == kDown) {
      wake = std::min(wake, down_at + all_down);
    } else {
      if (outage == kBefore) wake = std::min(wake, down_at);
      wake = std::min(wake, next_kill);
      for (Clock::time_point r : restart_at) wake = std::min(wake, r);
    }
    std::this_thread::sleep_until(wake);
  }
  callers.Join();  // each call ends by its deadline
  backends.StopAll();

  // Report.
  nlohmann::json json = {{"seed", seed},
                         {"backends", flags.backends},
                         {"threads_per_channel", flags.threads},
                         {"duration_s", flags.duration_s},
                         {"deadline_ms", flags.deadline_ms},
                         {"all_down_ms", flags.all_down_ms},
                         {"signal", signame},
                         {"kills", kills},
                         {"restarts", restarts},
                         {"phases", nlohmann::json::array()}};
  std::printf("chaos: %d random kills, %d restarts", kills, restarts);
  if (flags.all_down_ms > 0) {
    double from = std::chrono::duration<double>(down_at - t0).count();
    std::printf(", all %d backends down %.1f-%.1f s", flags.backends, from,
                from + flags.all_down_ms / 1e3);
  }
  std::printf("\n");
  // failed[channel]: phase 1 calls lost, all of them and those lost in flight.
  uint64_t failed[2] = {0, 0}, in_flight[2] = {0, 0};
  for (int p = 0; p < 2; ++p) {
    std::printf("\nphase %d (%s calls):\n  %-7s %8s %8s %7s %9s %8s %8s %8s %5s\n", p + 1,
                kPhaseNames[p], "channel", "calls", "ok", "failed", "in-flight", "p50 ms", "p99 ms",
                "max ms", ">1s");
    nlohmann::json pj = {{"phase", p + 1}, {"calls", kPhaseNames[p]}};
    for (int c = 0; c < 2; ++c) {
      PhaseStats merged;
      for (auto& s : stats[c]) merged.Merge(s[p]);
      if (p == 0) {
        failed[c] = merged.failed();
        in_flight[c] = merged.failed(true);
      }
      pj[kChannelNames[c]] = Report(merged, kChannelNames[c]);
    }
    json["phases"].push_back(pj);
  }
  // Wait-for-ready calls lost other than in flight: stranded until their
  // deadline, or failed by a picker. gRPC's own channel is the floor.
  const uint64_t lbkit_lost = failed[0] - in_flight[0], native_lost = failed[1] - in_flight[1];
  const bool pass = lbkit_lost <= native_lost + static_cast<uint64_t>(flags.tolerate);
  using ull = unsigned long long;
  std::printf(
      "\nverdict: %s: wait-for-ready calls lost in phase 1 other than in flight: lbkit %llu, "
      "native %llu, tolerated %d (all failures: lbkit %llu, native %llu)\n",
      pass ? "PASS" : "FAIL", ull{lbkit_lost}, ull{native_lost}, flags.tolerate, ull{failed[0]},
      ull{failed[1]});
  std::fflush(stdout);
  json["verdict"] = {{"pass", pass},
                     {"lbkit_failed_wfr", failed[0]},
                     {"native_failed_wfr", failed[1]},
                     {"lbkit_lost_in_flight_wfr", in_flight[0]},
                     {"native_lost_in_flight_wfr", in_flight[1]}};
  if (!flags.json_path.empty()) {
    std::ofstream out(flags.json_path);
    out << json.dump(2) << "\n";
    out.close();
    if (!out) throw std::runtime_error("cannot write " + flags.json_path);
  }
  return pass ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  Flags flags;
  std::string server;
  try {
    if (int status = ParseFlags(argc, argv, &flags); status >= 0) return status;
    server = FindServer(flags.server);
  } catch (const UsageError& e) {
    std::cerr << "lbkit-chaos: " << e.what() << "\n(see lbkit-chaos --help)\n";
    return 2;
  }
  try {
    return Run(flags, server);
  } catch (const std::exception& e) {
    std::cerr << "lbkit-chaos: " << e.what() << "\n";
    return 3;
  }
}
