// The registries of policies and resolver factories, and the built-ins.
#include "lbkit/registry.h"

#include <algorithm>
#include <map>
#include <mutex>

#include "core/exception_text.h"
#include "core/shown_text.h"
#include "lbkit/etcd.h"
#include "lbkit/resolver.h"
#include "policies/least_request.h"
#include "policies/outlier_detection.h"
#include "policies/pick_first.h"
#include "policies/random.h"
#include "policies/ring_hash.h"
#include "policies/round_robin.h"
#include "policies/weighted_round_robin.h"
#include "resolvers/manual.h"
#include "resolvers/static.h"

namespace lbkit {
namespace {

template <typename T>
class Registry {
 public:
  // False, changing nothing, when `name` is taken and `replace` is false.
  bool Add(const std::string& name, std::shared_ptr<const T> value, bool replace) {
    std::lock_guard<std::mutex> lock(mu_);
    auto [it, inserted] = entries_.try_emplace(name, value);
    if (inserted) return true;
    if (!replace) return false;
    it->second = std::move(value);
    return true;
  }
  std::shared_ptr<const T> Find(const std::string& name) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = entries_.find(name);
    return it == entries_.end() ? nullptr : it->second;
  }
  std::vector<std::string> Names() {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<std::string> names;
    for (const auto& entry : entries_) names.push_back(entry.first);
    return names;  // std::map keeps them sorted
  }

 private:
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<const T>> entries_;
};

Registry<BalancerBuilder>& Balancers() {
  static Registry<BalancerBuilder>* registry = [] {
    auto* r = new Registry<BalancerBuilder>();
    auto pick_first = internal::MakePickFirstBuilder();
    r->Add(pick_first->name(), pick_first, /*replace=*/false);
    auto round_robin = internal::MakeRoundRobinBuilder();
    r->Add(round_robin->name(), round_robin, /*replace=*/false);
    auto random = internal::MakeRandomBuilder();
    r->Add(random->name(), random, /*replace=*/false);
    auto least_request = internal::MakeLeastRequestBuilder();
    r->Add(least_request->name(), least_request, /*replace=*/false);
    auto ring_hash = internal::MakeRingHashBuilder();
    r->Add(ring_hash->name(), ring_hash, /*replace=*/false);
    auto weighted_round_robin = internal::MakeWeightedRoundRobinBuilder();
    r->Add(weighted_round_robin->name(), weighted_round_robin, /*replace=*/false);
    auto outlier_detection = internal::MakeOutlierDetectionBuilder();
    r->Add(outlier_detection->name(), outlier_detection, /*replace=*/false);
    return r;
  }();
  return *registry;
}

Registry<ResolverFactory>& Resolvers() {
  static Registry<ResolverFactory>* registry = [] {
    auto* r = new Registry<ResolverFactory>();
    auto manual = internal::MakeManualResolverFactory();
    r->Add(manual->scheme(), manual, /*replace=*/false);
    auto fixed = internal::MakeStaticResolverFactory();
    r->Add(fixed->scheme(), fixed, /*replace=*/false);
    auto etcd = MakeEtcdResolverFactory();
    r->Add(etcd->scheme(), etcd, /*replace=*/false);
    return r;
  }();
  return *registry;
}

// What one registry's refusals say.
struct Words {
  const char* api;     // "lbkit::RegisterBalancer"
  const char* entry;   // "builder"
  const char* key;     // "name()"
  const char* called;  // "a policy named" (prefixes the quoted key)
  // Returns a reason when `key` is not a usable name, else "".
  std::string (*check)(const std::string& key);
};

// A policy name is printable ASCII without spaces: it is typed as a JSON key
// and printed in logs and statuses, where whitespace, control bytes or a
// stray encoding would make it unrecognisable.
std::string CheckPolicyName(const std::string& name) {
  if (name.empty()) return "the policy name is empty";
  for (char c : name) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte < 0x21 || byte > 0x7e) {
      return "policy name \"" + internal::Shown(name) +
             "\" holds a space, control or non-ASCII byte (allowed: printable ASCII, no "
             "whitespace)";
    }
  }
  return "";
}

// The scheme syntax ParseTarget accepts (RFC 3986): a scheme outside it could
// never be selected by a target.
std::string CheckScheme(const std::string& scheme) {
  auto letter = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); };
  auto digit = [](char c) { return c >= '0' && c <= '9'; };
  bool ok = !scheme.empty() && letter(scheme[0]);
  for (char c : scheme) ok = ok && (letter(c) || digit(c) || c == '+' || c == '-' || c == '.');
  if (ok) return "";
  return "scheme \"" + internal::Shown(scheme) +
         "\" is not a URI scheme (a letter, then letters, digits, '+', '-' or '.')";
}

template <typename T, typename KeyOf>
grpc::Status Register(Registry<T>& registry, const Words& words, std::shared_ptr<const T> entry,
                      KeyOf key_of, OnDuplicate on_duplicate) {
  auto invalid = [&words](const std::string& why) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, std::string(words.api) + ": " + why);
  };
  if (entry == nullptr) return invalid(std::string("the ") + words.entry + " is null");
  std::string key;
  try {
    key = key_of(*entry);
  } catch (...) {
    return invalid(std::string("the ") + words.entry + "'s " + words.key +
                   " threw: " + internal::CurrentExceptionText());
  }
  if (std::string why = words.check(key); !why.empty()) return invalid(why);
  if (!registry.Add(key, std::move(entry), on_duplicate == OnDuplicate::kReplace)) {
    return grpc::Status(grpc::StatusCode::ALREADY_EXISTS,
                        std::string(words.api) + ": " + words.called + " \"" + key +
                            "\" is registered already (pass OnDuplicate::kReplace to replace it)");
  }
  return grpc::Status::OK;
}

}  // namespace

grpc::Status RegisterBalancer(std::shared_ptr<const BalancerBuilder> builder,
                              OnDuplicate on_duplicate) {
  static const Words words{"lbkit::RegisterBalancer", "builder", "name()", "a policy named",
                           CheckPolicyName};
  return Register(
      Balancers(), words, std::move(builder), [](const BalancerBuilder& b) { return b.name(); },
      on_duplicate);
}

std::shared_ptr<const BalancerBuilder> FindBalancer(const std::string& name) {
  return Balancers().Find(name);
}

std::vector<std::string> RegisteredBalancers() { return Balancers().Names(); }

grpc::Status RegisterResolverFactory(std::shared_ptr<const ResolverFactory> factory,
                                     OnDuplicate on_duplicate) {
  static const Words words{"lbkit::RegisterResolverFactory", "factory", "scheme()", "scheme",
                           CheckScheme};
  return Register(
      Resolvers(), words, std::move(factory), [](const ResolverFactory& f) { return f.scheme(); },
      on_duplicate);
}

std::shared_ptr<const ResolverFactory> FindResolverFactory(const std::string& scheme) {
  return Resolvers().Find(scheme);
}

std::vector<std::string> RegisteredResolverSchemes() { return Resolvers().Names(); }

}  // namespace lbkit
