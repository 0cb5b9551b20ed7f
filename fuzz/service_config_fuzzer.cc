// Fuzzes ParseServiceConfig with every policy registered (the built-ins and
// the example's custom_round_robin): whatever the bytes, it returns OK with a
// usable config or INVALID_ARGUMENT with a printable, bounded message.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include "custom_round_robin.h"
#include "lbkit/lbkit.h"

namespace {

[[noreturn]] void Fail(const char* what, const std::string& detail) {
  std::fprintf(stderr, "service_config_fuzzer: %s: %s\n", what, detail.c_str());
  __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  grpc::Status status = customlb::RegisterCustomRoundRobin();
  if (!status.ok()) Fail("registering custom_round_robin", status.error_message());
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string json(reinterpret_cast<const char*>(data), size);
  lbkit::ServiceConfig config;
  grpc::Status status = lbkit::ParseServiceConfig(json, &config);
  if (status.ok()) {
    if (config.config == nullptr) Fail("OK without a config", json);
    if (lbkit::FindBalancer(config.policy_name) == nullptr) Fail("OK with no such policy", json);
    return 0;
  }
  if (status.error_code() != grpc::StatusCode::INVALID_ARGUMENT) {
    Fail("not INVALID_ARGUMENT", status.error_message());
  }
  const std::string& message = status.error_message();
  // Input is quoted bounded (about 200 bytes an excerpt, a few excerpts).
  if (message.size() > 2048) Fail("unbounded message", message.substr(0, 300));
  for (char c : message) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte == 0x7f) Fail("control byte in the message", message);
  }
  return 0;
}
