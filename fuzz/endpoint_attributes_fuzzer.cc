// Fuzzes internal::ParseEndpointAttributes ("weight=3;hash_key=k;zone=eu"):
// whatever the bytes, it returns OK, or INVALID_ARGUMENT with a printable
// message and *attributes left as they were (endpoint_attributes.h).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

#include "core/endpoint_attributes.h"
#include "lbkit/resolver.h"

namespace {

[[noreturn]] void Fail(const char* what, const std::string& detail) {
  std::fprintf(stderr, "endpoint_attributes_fuzzer: %s: %s\n", what, detail.c_str());
  __builtin_trap();
}

bool Same(const lbkit::EndpointAttributes& a, const lbkit::EndpointAttributes& b) {
  return a.weight == b.weight && a.hash_key == b.hash_key && a.values == b.values;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  lbkit::EndpointAttributes sentinel;
  sentinel.weight = 12345;
  sentinel.hash_key = "sentinel";
  sentinel.values["sentinel"] = "value";
  lbkit::EndpointAttributes attributes = sentinel;
  grpc::Status status = lbkit::internal::ParseEndpointAttributes(text, &attributes);
  if (status.ok()) {
    for (const auto& [key, value] : attributes.values) {
      if (key.empty() || value.empty()) Fail("an empty key or value accepted", std::string(text));
    }
    return 0;
  }
  if (status.error_code() != grpc::StatusCode::INVALID_ARGUMENT) {
    Fail("not INVALID_ARGUMENT", status.error_message());
  }
  if (!Same(attributes, sentinel)) Fail("changed the attributes on failure", std::string(text));
  for (char c : status.error_message()) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte == 0x7f) Fail("control byte in the message", status.error_message());
  }
  return 0;
}
