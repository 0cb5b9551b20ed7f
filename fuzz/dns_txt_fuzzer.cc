// Fuzzes internal::ChooseServiceConfig, gRFC A2's reading of a DNS TXT
// "grpc_config=" value (whoever answers DNS controls it): whatever the
// bytes, OK with a JSON object or nothing, or INVALID_ARGUMENT; never a
// throw or a crash.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include <nlohmann/json.hpp>

#include "resolvers/dns.h"

namespace {

[[noreturn]] void Fail(const char* what, const std::string& detail) {
  std::fprintf(stderr, "dns_txt_fuzzer: %s: %s\n", what, detail.c_str());
  __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  lbkit::internal::ServiceConfigClient client;
  client.hostname = "fuzz-host";
  client.percentile = static_cast<int>(size % 100) + 1;
  std::string chosen;
  grpc::Status status = lbkit::internal::ChooseServiceConfig(text, client, &chosen);
  if (status.ok()) {
    if (!chosen.empty()) {
      nlohmann::json parsed = nlohmann::json::parse(chosen, nullptr, false);
      if (!parsed.is_object()) Fail("a chosen config that is not an object", chosen);
    }
    return 0;
  }
  if (status.error_code() != grpc::StatusCode::INVALID_ARGUMENT) {
    Fail("not INVALID_ARGUMENT", status.error_message());
  }
  return 0;
}
