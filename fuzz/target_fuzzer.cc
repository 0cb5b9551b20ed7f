// Fuzzes what CreateChannel does with a target, short of starting a channel:
// ParseTarget, then the scheme's registered resolver factory's Create, and
// the static factory's Create whatever the scheme (so that the address-list
// parser sees every input); a resolver built is started against a listener
// that keeps what it reports, then shut down.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>

#include "lbkit/lbkit.h"
#include "resolvers/static.h"

namespace {

[[noreturn]] void Fail(const char* what, const std::string& detail) {
  std::fprintf(stderr, "target_fuzzer: %s: %s\n", what, detail.c_str());
  __builtin_trap();
}

class KeepingListener final : public lbkit::ResolverListener {
 public:
  void OnUpdate(lbkit::ResolverState state) override { last = std::move(state); }
  void OnError(grpc::Status) override {}
  lbkit::ResolverState last;
};

void CreateAndStart(const lbkit::ResolverFactory& factory, const lbkit::Target& target) {
  std::shared_ptr<lbkit::Resolver> resolver;
  grpc::Status status = factory.Create(target, &resolver);
  if (!status.ok()) {
    if (status.error_code() != grpc::StatusCode::INVALID_ARGUMENT) {
      Fail("a refusal that is not INVALID_ARGUMENT", status.error_message());
    }
    return;
  }
  if (resolver == nullptr) Fail("OK without a resolver", target.uri);
  auto listener = std::make_shared<KeepingListener>();
  resolver->Start(listener);
  resolver->Shutdown();
  for (const lbkit::Endpoint& endpoint : listener->last.endpoints) {
    if (endpoint.addresses.empty()) Fail("an endpoint without addresses", target.uri);
    for (const std::string& address : endpoint.addresses) {
      if (address.empty()) Fail("an empty address", target.uri);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string uri(reinterpret_cast<const char*>(data), size);
  lbkit::Target target;
  grpc::Status status = lbkit::ParseTarget(uri, &target);
  if (!status.ok()) {
    if (status.error_code() != grpc::StatusCode::INVALID_ARGUMENT) {
      Fail("ParseTarget: not INVALID_ARGUMENT", status.error_message());
    }
    return 0;
  }
  if (target.uri != uri) Fail("the target's uri differs from the input", uri);
  // What CreateChannel does (the manual scheme needs ChannelOptions::resolver,
  // which it refuses without).
  if (auto factory = lbkit::FindResolverFactory(target.scheme)) CreateAndStart(*factory, target);
  static const std::shared_ptr<const lbkit::ResolverFactory> fixed =
      lbkit::internal::MakeStaticResolverFactory();
  lbkit::Target as_static = target;
  as_static.scheme = fixed->scheme();
  CreateAndStart(*fixed, as_static);
  return 0;
}
