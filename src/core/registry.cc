// The registries of policies and resolver factories, and the built-ins.
#include "lbkit/registry.h"

#include <algorithm>
#include <map>
#include <mutex>

#include "lbkit/resolver.h"
#include "policies/pick_first.h"
#include "policies/round_robin.h"
#include "resolvers/manual.h"
#include "resolvers/static.h"

namespace lbkit {
namespace {

template <typename T>
class Registry {
 public:
  void Add(const std::string& name, std::shared_ptr<const T> value) {
    std::lock_guard<std::mutex> lock(mu_);
    entries_[name] = std::move(value);
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
    r->Add(pick_first->name(), pick_first);
    auto round_robin = internal::MakeRoundRobinBuilder();
    r->Add(round_robin->name(), round_robin);
    return r;
  }();
  return *registry;
}

Registry<ResolverFactory>& Resolvers() {
  static Registry<ResolverFactory>* registry = [] {
    auto* r = new Registry<ResolverFactory>();
    auto manual = internal::MakeManualResolverFactory();
    r->Add(manual->scheme(), manual);
    auto fixed = internal::MakeStaticResolverFactory();
    r->Add(fixed->scheme(), fixed);
    return r;
  }();
  return *registry;
}

}  // namespace

void RegisterBalancer(std::shared_ptr<const BalancerBuilder> builder) {
  if (builder == nullptr) return;
  const std::string name = builder->name();  // before the move below
  Balancers().Add(name, std::move(builder));
}

std::shared_ptr<const BalancerBuilder> FindBalancer(const std::string& name) {
  return Balancers().Find(name);
}

std::vector<std::string> RegisteredBalancers() { return Balancers().Names(); }

void RegisterResolverFactory(std::shared_ptr<const ResolverFactory> factory) {
  if (factory == nullptr) return;
  const std::string scheme = factory->scheme();  // before the move below
  Resolvers().Add(scheme, std::move(factory));
}

std::shared_ptr<const ResolverFactory> FindResolverFactory(const std::string& scheme) {
  return Resolvers().Find(scheme);
}

std::vector<std::string> RegisteredResolverSchemes() { return Resolvers().Names(); }

}  // namespace lbkit
