// The "dns" resolver (include/lbkit/dns_resolver.h): c-ares lookups on one
// thread shared by every dns resolver of the process.
//
// Threads. A DnsResolver's methods run on its channel's work serializer
// (lbkit's control-plane threads, shared by every channel) and only post
// tasks. Everything a lookup touches (the c-ares channel, the
// timers, the listener) belongs to a Lookups object that lives on the
// lbkit-dns thread (DnsLoop), which alone calls c-ares and the listener: no
// lock is needed around either, and a slow DNS server never holds up a
// channel. Shutdown posts the teardown and waits for it, so that once it
// returns the listener is never called again and the c-ares channel is gone.
#include "resolvers/dns.h"

#include <ares.h>
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <chrono>
#include <climits>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/address.h"
#include "core/shown_text.h"
#include "core/trace.h"
#include "lbkit/dns_resolver.h"

namespace lbkit {
namespace internal {
namespace {

using Clock = std::chrono::steady_clock;

grpc::Status Invalid(const std::string& why) {
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, why);
}

// What a failed query's c-ares status means, for an error message.
std::string FailureText(int status) {
  switch (status) {
    case ARES_ENOTFOUND:
      return "no such name (NXDOMAIN)";
    case ARES_ENODATA:
      return "no A or AAAA record (the name exists, with no address)";
    case ARES_ETIMEOUT:
      return "timeout: no answer from the DNS server";
    case ARES_ESERVFAIL:
      return "server failure (SERVFAIL)";
    case ARES_EREFUSED:
      return "query refused (REFUSED)";
    case ARES_EFORMERR:
      return "the server could not read the query (FORMERR)";
    case ARES_ECONNREFUSED:
      return "connection to the DNS server refused";
    case ARES_EBADRESP:
      return "malformed answer";
    default:
      return std::string("c-ares error: ") + ares_strerror(status);
  }
}

const std::string& LocalHostname() {
  static const std::string* name = [] {
    char buffer[256] = {};
    if (gethostname(buffer, sizeof(buffer) - 1) != 0) buffer[0] = '\0';
    return new std::string(buffer);
  }();
  return *name;
}

std::string Lowercase(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

// Delays beyond 100 years are 100 years, so that adding one to a steady
// clock time point cannot overflow.
std::chrono::milliseconds Bounded(std::chrono::milliseconds delay) {
  constexpr std::chrono::milliseconds kLongest = std::chrono::hours(24 * 365 * 100);
  return std::clamp(delay, std::chrono::milliseconds(0), kLongest);
}

class Lookups;

// The lbkit-dns thread: runs posted tasks, polls the sockets of every
// started resolver's c-ares channel and wakes for their timers. It exits when
// it has neither tasks nor resolvers, and the next Post starts it again.
class DnsLoop {
 public:
  // The process-wide loop, never destroyed (its thread exits when idle).
  static DnsLoop& Get() {
    static DnsLoop* loop = new DnsLoop();
    return *loop;
  }
  // Runs `task` on the loop thread, soon. Thread-safe.
  void Post(std::function<void()> task) {
    std::lock_guard<std::mutex> lock(mu_);
    tasks_.push_back(std::move(task));
    if (!running_) {
      // The previous thread, if any, set running_ to false under mu_ as the
      // last thing it did: it has returned, or is returning.
      if (thread_.joinable()) thread_.join();
      running_ = true;
      thread_ = std::thread([this] { Run(); });
    }
    char byte = 0;
    if (write(wake_[1], &byte, 1) < 0) {
      // The pipe is full: the loop is woken already.
    }
  }
  bool IsCurrent() const { return loop_thread_.load() == std::this_thread::get_id(); }
  // Loop thread only.
  void Add(std::shared_ptr<Lookups> lookups) { lookups_.push_back(std::move(lookups)); }
  void Remove(const Lookups* lookups) {
    lookups_.erase(std::remove_if(lookups_.begin(), lookups_.end(),
                                  [lookups](const auto& l) { return l.get() == lookups; }),
                   lookups_.end());
  }

 private:
  DnsLoop() {
    ares_library_init(ARES_LIB_INIT_ALL);
    if (pipe2(wake_, O_NONBLOCK | O_CLOEXEC) != 0) {
      LogLine("dns: cannot create the lbkit-dns wake pipe; lookups will be slow");
      wake_[0] = wake_[1] = -1;
    }
  }
  void Run();

  std::mutex mu_;
  std::deque<std::function<void()>> tasks_;
  bool running_ = false;
  std::thread thread_;
  std::atomic<std::thread::id> loop_thread_{};
  int wake_[2] = {-1, -1};
  std::vector<std::shared_ptr<Lookups>> lookups_;  // loop thread only
};

// One resolver's lookups, on the loop thread only (but for the constants).
class Lookups {
 public:
  Lookups(DnsTarget target, const DnsResolverOptions& options, std::string uri,
          std::shared_ptr<ResolverListener> listener)
      : target_(std::move(target)),
        options_(options),
        uri_(std::move(uri)),
        listener_(std::move(listener)) {
    std::random_device random;
    client_.hostname = LocalHostname();
    client_.percentile = std::uniform_int_distribution<int>(1, 100)(random);
  }

  // Creates the c-ares channel and starts the first lookup.
  void Begin(Clock::time_point now) {
    ares_options options{};
    // Retransmits at a quarter of the timeout, and at three quarters; the
    // lookup's own deadline (query_timeout) ends it in any case.
    options.timeout =
        static_cast<int>(std::clamp<int64_t>(options_.query_timeout.count() / 4, 1, INT_MAX));
    options.tries = 3;
    int status = ares_init_options(&channel_, &options, ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES);
    if (status == ARES_SUCCESS && !target_.server.empty()) {
      status = ares_set_servers_ports_csv(channel_, target_.server.c_str());
    }
    if (status != ARES_SUCCESS) {
      if (channel_ != nullptr) ares_destroy(channel_);
      channel_ = nullptr;
      stopped_ = true;
      listener_->OnError(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                      "dns: cannot set up c-ares for \"" + Shown(target_.host) +
                                          "\" (" + ServerText() + "): " + ares_strerror(status)));
      return;
    }
    StartLookup(now);
  }

  void RequestReresolution() {
    // A lookup in flight answers the request: its result is newer than it.
    if (!stopped_ && !in_flight_) requested_ = true;
  }

  // No listener call from now on. Safe inside a listener call.
  void Stop() { stopped_ = true; }

  // Stops, and releases the c-ares channel (its queries end, cancelled) and
  // the listener. Never inside a c-ares callback.
  void End() {
    stopped_ = true;
    if (channel_ != nullptr) ares_destroy(channel_);
    channel_ = nullptr;
    listener_.reset();
  }

  // Appends the sockets c-ares waits on.
  void AddPollFds(std::vector<pollfd>* fds) {
    if (channel_ == nullptr || !in_flight_) return;
    std::array<ares_socket_t, ARES_GETSOCK_MAXNUM> sockets;
    int bits = ares_getsock(channel_, sockets.data(), ARES_GETSOCK_MAXNUM);
    for (int i = 0; i < ARES_GETSOCK_MAXNUM; ++i) {
      short events = 0;
      if (ARES_GETSOCK_READABLE(bits, i)) events |= POLLIN;
      if (ARES_GETSOCK_WRITABLE(bits, i)) events |= POLLOUT;
      if (events != 0) fds->push_back(pollfd{sockets[i], events, 0});
    }
  }

  // When Process must run next, at the latest.
  Clock::time_point NextWake(Clock::time_point now) const {
    if (stopped_) return Clock::time_point::max();
    if (!in_flight_) return DueTime();
    Clock::time_point wake = deadline_;
    timeval tv{};
    if (ares_timeout(channel_, nullptr, &tv) != nullptr) {
      wake = std::min(
          wake, now + std::chrono::seconds(tv.tv_sec) + std::chrono::microseconds(tv.tv_usec));
    }
    return wake;
  }

  // Handles the ready sockets among `fds` (those AddPollFds gave), c-ares's
  // timeouts, the lookup's deadline, and starts a lookup that is due.
  void Process(const pollfd* fds, size_t count, Clock::time_point now) {
    if (stopped_ || channel_ == nullptr) return;
    if (in_flight_) {
      for (size_t i = 0; i < count; ++i) {
        bool readable = (fds[i].revents & (POLLIN | POLLERR | POLLHUP)) != 0;
        bool writable = (fds[i].revents & POLLOUT) != 0;
        if (readable || writable) {
          ares_process_fd(channel_, readable ? fds[i].fd : ARES_SOCKET_BAD,
                          writable ? fds[i].fd : ARES_SOCKET_BAD);
        }
      }
      ares_process_fd(channel_, ARES_SOCKET_BAD, ARES_SOCKET_BAD);  // timeouts
    }
    if (in_flight_ && now >= deadline_) {
      timed_out_ = true;
      ares_cancel(channel_);  // every query ends now, ARES_ECANCELLED: Finish runs
    }
    if (!stopped_ && !in_flight_ && now >= DueTime()) StartLookup(now);
  }

 private:
  enum Kind { kA, kAaaa, kTxt };
  struct Query {
    Lookups* lookups;
    Kind kind;
  };

  std::string ServerText() const {
    return target_.server.empty() ? "the system's DNS servers" : "DNS server " + target_.server;
  }

  // When the next lookup is due: on request, on refresh, or to retry a
  // failure; never sooner than min_time_between_resolutions after the last.
  Clock::time_point DueTime() const {
    Clock::time_point earliest = last_start_ + options_.min_time_between_resolutions;
    Clock::time_point due = Clock::time_point::max();
    if (requested_) due = earliest;
    if (options_.refresh_interval.count() > 0) {
      due = std::min(due, std::max(earliest, last_start_ + options_.refresh_interval));
    }
    if (retry_at_ != Clock::time_point::max()) due = std::min(due, std::max(earliest, retry_at_));
    return due;
  }

  void StartLookup(Clock::time_point now) {
    last_start_ = now;
    requested_ = false;
    retry_at_ = Clock::time_point::max();
    deadline_ = now + options_.query_timeout;
    timed_out_ = false;
    v4_.clear();
    v6_.clear();
    status_[kA] = status_[kAaaa] = ARES_SUCCESS;
    txt_.reset();
    in_flight_ = true;
    if (FromHostsFile()) {
      Trace(TraceFlag::kResolver, uri_, ": \"", target_.host, "\" from the hosts file");
      Finish(now);
      return;
    }
    Trace(TraceFlag::kResolver, uri_, ": looking up \"", target_.host, "\" via ", ServerText());
    pending_ = options_.enable_service_config ? 3 : 2;
    ares_search(channel_, target_.host.c_str(), ns_c_in, ns_t_a, &Lookups::OnQueryDone,
                &queries_[kA]);
    ares_search(channel_, target_.host.c_str(), ns_c_in, ns_t_aaaa, &Lookups::OnQueryDone,
                &queries_[kAaaa]);
    if (options_.enable_service_config) {
      std::string txt_name = "_grpc_config." + target_.host;
      ares_search(channel_, txt_name.c_str(), ns_c_in, ns_t_txt, &Lookups::OnQueryDone,
                  &queries_[kTxt]);
    }
  }

  // The hosts file first, as c-ares's and the C library's default lookup
  // order has it ("files", then DNS); "localhost" never goes to DNS.
  bool FromHostsFile() {
    for (int family : {AF_INET6, AF_INET}) {
      hostent* host = nullptr;
      if (ares_gethostbyname_file(channel_, target_.host.c_str(), family, &host) != ARES_SUCCESS) {
        continue;
      }
      char text[INET6_ADDRSTRLEN];
      for (char** address = host->h_addr_list; *address != nullptr; ++address) {
        if (inet_ntop(family, *address, text, sizeof(text)) != nullptr) {
          (family == AF_INET ? v4_ : v6_).emplace_back(text);
        }
      }
      ares_free_hostent(host);
    }
    if (v4_.empty() && v6_.empty() && Lowercase(target_.host) == "localhost") {
      v6_ = {"::1"};  // as gRPC resolves it where it does so itself
      v4_ = {"127.0.0.1"};
    }
    return !v4_.empty() || !v6_.empty();
  }

  static void OnQueryDone(void* arg, int status, int /*timeouts*/, unsigned char* answer,
                          int length) {
    auto* query = static_cast<Query*>(arg);
    query->lookups->OnAnswer(query->kind, status, answer, length);
  }

  void OnAnswer(Kind kind, int status, const unsigned char* answer, int length) {
    if (status == ARES_SUCCESS && !stopped_) {
      if (kind == kTxt) {
        ReadTxt(answer, length);
      } else {
        status = ReadAddresses(kind, answer, length);
      }
    }
    if (kind != kTxt) status_[kind] = status;
    if (--pending_ == 0) Finish(Clock::now());
  }

  int ReadAddresses(Kind kind, const unsigned char* answer, int length) {
    constexpr int kMax = 256;
    char text[INET6_ADDRSTRLEN];
    int count = kMax;
    if (kind == kA) {
      std::vector<ares_addrttl> addresses(kMax);
      int status = ares_parse_a_reply(answer, length, nullptr, addresses.data(), &count);
      if (status != ARES_SUCCESS) return status;
      for (int i = 0; i < count; ++i) {
        if (inet_ntop(AF_INET, &addresses[i].ipaddr, text, sizeof(text))) v4_.emplace_back(text);
      }
    } else {
      std::vector<ares_addr6ttl> addresses(kMax);
      int status = ares_parse_aaaa_reply(answer, length, nullptr, addresses.data(), &count);
      if (status != ARES_SUCCESS) return status;
      for (int i = 0; i < count; ++i) {
        if (inet_ntop(AF_INET6, &addresses[i].ip6addr, text, sizeof(text))) v6_.emplace_back(text);
      }
    }
    return count > 0 ? ARES_SUCCESS : ARES_ENODATA;
  }

  // As gRPC C-core: the first record whose first string starts with
  // "grpc_config=" gives the config, its strings joined.
  void ReadTxt(const unsigned char* answer, int length) {
    ares_txt_ext* records = nullptr;
    if (ares_parse_txt_reply_ext(answer, length, &records) != ARES_SUCCESS) return;
    static constexpr std::string_view kPrefix = "grpc_config=";
    bool inside = false;
    for (ares_txt_ext* chunk = records; chunk != nullptr; chunk = chunk->next) {
      std::string_view text(reinterpret_cast<const char*>(chunk->txt), chunk->length);
      if (chunk->record_start) {
        if (inside) break;
        if (text.substr(0, kPrefix.size()) == kPrefix) {
          inside = true;
          txt_ = std::string(text.substr(kPrefix.size()));
        }
      } else if (inside) {
        txt_->append(text);
      }
    }
    ares_free_data(records);
  }

  void Finish(Clock::time_point now) {
    in_flight_ = false;
    if (stopped_) return;
    std::shared_ptr<ResolverListener> listener = listener_;  // kept alive through the call
    if (!v4_.empty() || !v6_.empty()) {
      backoff_ = kInitialBackoff;
      has_endpoints_ = true;
      ResolverState state;
      for (const auto* family : {&v6_, &v4_}) {
        for (const std::string& ip : *family) {
          state.endpoints.push_back(Endpoint{{JoinHostPort(ip, target_.port)}});
        }
      }
      if (options_.enable_service_config) state.service_config = ServiceConfigFromTxt();
      Trace(TraceFlag::kResolver, uri_, ": \"", target_.host, "\" has ", state.endpoints.size(),
            " address(es)");
      listener->OnUpdate(std::move(state));
      return;
    }
    std::string why;
    if (timed_out_) {
      why = "timeout: no answer within " + std::to_string(options_.query_timeout.count()) + " ms";
    } else if (status_[kA] == ARES_ENOTFOUND || status_[kAaaa] == ARES_ENOTFOUND) {
      why = FailureText(ARES_ENOTFOUND);
    } else {
      // An empty answer (both ENODATA, or success with no address) is an
      // error too; otherwise the first real failure says most.
      int status = status_[kA] != ARES_SUCCESS && status_[kA] != ARES_ENODATA ? status_[kA]
                   : status_[kAaaa] != ARES_SUCCESS                           ? status_[kAaaa]
                                                                              : ARES_ENODATA;
      why = FailureText(status);
    }
    grpc::Status error(grpc::StatusCode::UNAVAILABLE, "dns: resolving \"" + Shown(target_.host) +
                                                          "\" (" + ServerText() + "): " + why);
    retry_at_ = now + backoff_;
    backoff_ = std::min(std::chrono::duration_cast<std::chrono::milliseconds>(backoff_ * 1.6),
                        kMaxBackoff);
    if (has_endpoints_) {
      LogLine(uri_ + ": " + error.error_message() + "; keeping the last good endpoints");
    } else {
      listener->OnError(error);
    }
  }

  // The service config to report: the chosen one, none, or for a TXT
  // record that breaks gRFC A2, the error as a JSON string. The channel
  // rejects anything that is not a JSON object, with that string in its
  // error, and keeps its last good config (or with none fails its calls) as
  // gRPC does with a bad config from DNS.
  std::string ServiceConfigFromTxt() const {
    if (!txt_.has_value()) return "";  // no record, or no answer: no config, as in gRPC
    std::string chosen;
    grpc::Status status;
    try {
      status = ChooseServiceConfig(*txt_, client_, &chosen);
    } catch (const std::exception& e) {  // nothing may unwind into c-ares
      status = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, e.what());
    }
    if (status.ok()) return chosen;
    // Whatever bytes the record held, the JSON string must encode: replace
    // what is not UTF-8 rather than throw.
    return nlohmann::json("TXT record _grpc_config." + target_.host +
                          " breaks gRFC A2: " + status.error_message())
        .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }

  static constexpr std::chrono::milliseconds kInitialBackoff{1000};
  static constexpr std::chrono::milliseconds kMaxBackoff{120000};

  const DnsTarget target_;
  const DnsResolverOptions options_;
  const std::string uri_;
  std::shared_ptr<ResolverListener> listener_;
  ServiceConfigClient client_;
  ares_channel channel_ = nullptr;
  std::array<Query, 3> queries_{{{this, kA}, {this, kAaaa}, {this, kTxt}}};

  bool stopped_ = false;
  bool in_flight_ = false;
  bool requested_ = false;
  bool has_endpoints_ = false;
  Clock::time_point last_start_;
  Clock::time_point retry_at_ = Clock::time_point::max();
  std::chrono::milliseconds backoff_ = kInitialBackoff;

  // The lookup in flight.
  Clock::time_point deadline_;
  bool timed_out_ = false;
  int pending_ = 0;
  std::array<int, 2> status_{};
  std::vector<std::string> v4_;
  std::vector<std::string> v6_;
  std::optional<std::string> txt_;
};

void DnsLoop::Run() {
  pthread_setname_np(pthread_self(), "lbkit-dns");
  loop_thread_ = std::this_thread::get_id();
  std::vector<pollfd> fds;
  std::vector<size_t> counts;
  for (;;) {
    std::deque<std::function<void()>> tasks;
    {
      std::lock_guard<std::mutex> lock(mu_);
      tasks.swap(tasks_);
      if (tasks.empty() && lookups_.empty()) {
        loop_thread_ = std::thread::id();
        running_ = false;
        return;
      }
    }
    for (auto& task : tasks) task();
    if (!tasks.empty()) continue;  // they may have posted more, or ended the last resolver
    Clock::time_point now = Clock::now();
    Clock::time_point wake = Clock::time_point::max();
    fds.assign(1, pollfd{wake_[0], POLLIN, 0});
    counts.clear();
    for (const auto& lookups : lookups_) {
      size_t before = fds.size();
      lookups->AddPollFds(&fds);
      counts.push_back(fds.size() - before);
      wake = std::min(wake, lookups->NextWake(now));
    }
    int timeout_ms = -1;
    if (wake != Clock::time_point::max()) {
      auto wait = std::chrono::ceil<std::chrono::milliseconds>(wake - now).count();
      timeout_ms = static_cast<int>(std::clamp<int64_t>(wait, 0, INT_MAX));
    }
    if (wake_[0] < 0) timeout_ms = std::min(timeout_ms < 0 ? 10 : timeout_ms, 10);
    poll(fds.data(), fds.size(), timeout_ms);
    if (fds[0].revents != 0) {
      char drain[64];
      while (read(wake_[0], drain, sizeof(drain)) > 0) {
      }
    }
    now = Clock::now();
    size_t at = 1;
    for (size_t i = 0; i < counts.size(); ++i) {
      lookups_[i]->Process(fds.data() + at, counts[i], now);
      at += counts[i];
    }
  }
}

class DnsResolver final : public Resolver {
 public:
  DnsResolver(DnsTarget target, const DnsResolverOptions& options, std::string uri)
      : target_(std::move(target)), options_(options), uri_(std::move(uri)) {}
  ~DnsResolver() override { Shutdown(); }

  void Start(std::shared_ptr<ResolverListener> listener) override {
    if (!target_.address.empty()) {  // an IP literal: itself, no lookup
      ResolverState state;
      state.endpoints.push_back(Endpoint{{target_.address}});
      listener->OnUpdate(std::move(state));
      return;
    }
    lookups_ = std::make_shared<Lookups>(target_, options_, uri_, std::move(listener));
    DnsLoop::Get().Post([lookups = lookups_] {
      DnsLoop::Get().Add(lookups);
      lookups->Begin(Clock::now());
    });
  }

  void RequestReresolution() override {
    if (lookups_ != nullptr) {
      DnsLoop::Get().Post([lookups = lookups_] { lookups->RequestReresolution(); });
    }
  }

  void Shutdown() override {
    if (lookups_ == nullptr) return;
    std::shared_ptr<Lookups> lookups = std::move(lookups_);
    lookups_ = nullptr;
    DnsLoop& loop = DnsLoop::Get();
    auto end = [&loop, lookups] {
      loop.Remove(lookups.get());
      lookups->End();
    };
    if (loop.IsCurrent()) {
      // Inside a listener call (the channel's last reference went there):
      // stop now, release the c-ares channel after this callback returns.
      lookups->Stop();
      loop.Post(end);
      return;
    }
    // Shared: the loop may still be inside set_value when this wait returns.
    auto done = std::make_shared<std::promise<void>>();
    std::future<void> ended = done->get_future();
    loop.Post([end, done] {
      end();
      done->set_value();
    });
    ended.wait();
  }

 private:
  const DnsTarget target_;
  const DnsResolverOptions options_;
  const std::string uri_;
  std::shared_ptr<Lookups> lookups_;  // between Start and Shutdown, for a name
};

class DnsResolverFactory final : public ResolverFactory {
 public:
  explicit DnsResolverFactory(DnsResolverOptions options) : options_(options) {
    options_.min_time_between_resolutions = Bounded(options_.min_time_between_resolutions);
    options_.refresh_interval = Bounded(options_.refresh_interval);
    if (options_.query_timeout.count() <= 0)
      options_.query_timeout = DnsResolverOptions{}.query_timeout;
    options_.query_timeout = Bounded(options_.query_timeout);
  }
  std::string scheme() const override { return "dns"; }
  grpc::Status Create(const Target& target, std::shared_ptr<Resolver>* resolver) const override {
    DnsTarget parsed;
    grpc::Status status = ParseDnsTarget(target, &parsed);
    if (!status.ok()) {
      return Invalid("target \"" + Shown(target.uri) + "\": " + status.error_message());
    }
    *resolver = std::make_shared<DnsResolver>(std::move(parsed), options_, target.uri);
    return grpc::Status::OK;
  }

 private:
  DnsResolverOptions options_;
};

}  // namespace

grpc::Status ParseDnsTarget(const Target& target, DnsTarget* parsed) {
  const std::string& name = target.endpoint;
  if (name.empty()) {
    return Invalid("no host name (expected dns:///host:port or dns://DNS_SERVER:PORT/host:port)");
  }
  if (name[0] == '/') {
    return Invalid("the name starts with '/' (one slash too many? expected dns:///host:port)");
  }
  HostPort host_port;
  grpc::Status status = SplitHostPort(name, &host_port);
  if (!status.ok()) return Invalid("bad name \"" + Shown(name) + "\": " + status.error_message());
  DnsTarget result;
  result.host = host_port.host;
  result.port = host_port.port.empty() ? "443" : host_port.port;
  std::string address = JoinHostPort(result.host, result.port);
  status = CheckAddress(address);  // the host's characters, IPv6 brackets, the port's range
  if (!status.ok()) return status;
  if (IpFamily(result.host) != 0) result.address = address;
  if (!target.authority.empty()) {
    const std::string& authority = target.authority;
    HostPort server;
    status = SplitHostPort(authority, &server);
    if (!status.ok()) {
      return Invalid("bad DNS server \"" + Shown(authority) + "\": " + status.error_message());
    }
    if (IpFamily(server.host) == 0 || server.host.find('%') != std::string::npos) {
      return Invalid("the DNS server \"" + Shown(authority) +
                     "\" is not an IP address (expected dns://1.2.3.4:53/name or "
                     "dns://[::1]:53/name)");
    }
    result.server = JoinHostPort(server.host, server.port.empty() ? "53" : server.port);
    status = CheckAddress(result.server);
    if (!status.ok()) return Invalid("bad DNS server: " + status.error_message());
  }
  *parsed = std::move(result);
  return grpc::Status::OK;
}

grpc::Status ChooseServiceConfig(const std::string& txt, const ServiceConfigClient& client,
                                 std::string* service_config) {
  nlohmann::json root = nlohmann::json::parse(txt, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) return Invalid("not valid JSON: " + Shown(txt));
  if (!root.is_array()) {
    return Invalid("must be a JSON list of service config choices, got " + Shown(root.dump()));
  }
  // Every choice is checked: one invalid choice invalidates the whole config.
  const nlohmann::json* chosen = nullptr;
  for (size_t i = 0; i < root.size(); ++i) {
    const nlohmann::json& choice = root[i];
    std::string where = "choice " + std::to_string(i);
    if (!choice.is_object()) return Invalid(where + " is not a JSON object");
    auto strings = [&where](const nlohmann::json& value, const std::string& field) {
      bool ok = value.is_array();
      for (const auto& item : value) ok = ok && item.is_string();
      return ok ? grpc::Status::OK : Invalid(where + ": " + field + " must be a list of strings");
    };
    bool matches = true;
    for (auto field = choice.begin(); field != choice.end(); ++field) {
      const nlohmann::json& value = field.value();
      if (field.key() == "clientLanguage") {
        if (grpc::Status status = strings(value, field.key()); !status.ok()) return status;
        bool cpp = value.empty();
        for (const auto& language : value) {
          cpp = cpp || Lowercase(language.get<std::string>()) == "c++";
        }
        matches = matches && cpp;
      } else if (field.key() == "clientHostname") {
        if (grpc::Status status = strings(value, field.key()); !status.ok()) return status;
        bool here = value.empty();
        for (const auto& hostname : value) {
          here = here || hostname.get<std::string>() == client.hostname;
        }
        matches = matches && here;
      } else if (field.key() == "percentage") {
        if (!value.is_number_integer() || value.get<int64_t>() < 0 || value.get<int64_t>() > 100) {
          return Invalid(where + ": percentage must be a whole number from 0 to 100, got " +
                         Shown(value.dump()));
        }
        matches = matches && client.percentile <= value.get<int64_t>();
      } else if (field.key() == "serviceConfig") {
        if (!value.is_object()) return Invalid(where + ": serviceConfig must be a JSON object");
      } else {
        return Invalid(where + ": unknown field \"" + Shown(field.key()) + "\"");
      }
    }
    auto config = choice.find("serviceConfig");
    if (config == choice.end()) return Invalid(where + " has no serviceConfig");
    if (matches && chosen == nullptr) chosen = &*config;
  }
  *service_config = chosen == nullptr ? "" : chosen->dump();
  return grpc::Status::OK;
}

}  // namespace internal

std::shared_ptr<const ResolverFactory> MakeDnsResolverFactory(DnsResolverOptions options) {
  return std::make_shared<internal::DnsResolverFactory>(options);
}

}  // namespace lbkit
