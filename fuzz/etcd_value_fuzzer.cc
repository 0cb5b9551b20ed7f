// Fuzzes internal::DecodeEtcdEndpoint, the reader of the values under an
// etcd service's prefix (anyone who can write there controls them): whatever
// the bytes, it returns OK with one checked address and weight >= 1, or
// INVALID_ARGUMENT with a printable message; it never throws or crashes.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include "core/address.h"
#include "discovery/etcd_common.h"

namespace {

[[noreturn]] void Fail(const char* what, const std::string& detail) {
  std::fprintf(stderr, "etcd_value_fuzzer: %s: %s\n", what, detail.c_str());
  __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  lbkit::internal::EtcdEndpointValue value;
  grpc::Status status = lbkit::internal::DecodeEtcdEndpoint(text, &value);
  if (status.ok()) {
    if (value.endpoint.addresses.size() != 1) Fail("not one address", text);
    if (!lbkit::internal::CheckAddress(value.endpoint.addresses[0]).ok()) {
      Fail("an unchecked address accepted", text);
    }
    if (value.endpoint.attributes.weight < 1) Fail("weight 0 accepted", text);
    // What the registrar would write back must decode to the same endpoint.
    lbkit::internal::EtcdEndpointValue again;
    std::string encoded =
        lbkit::internal::EncodeEtcdEndpoint(value.endpoint.addresses[0], value.endpoint.attributes);
    if (!lbkit::internal::DecodeEtcdEndpoint(encoded, &again).ok() && encoded.size() <= 65536) {
      Fail("its own encoding does not decode", encoded);
    }
    return 0;
  }
  if (status.error_code() != grpc::StatusCode::INVALID_ARGUMENT) {
    Fail("not INVALID_ARGUMENT", status.error_message());
  }
  for (char c : status.error_message()) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte >= 0x7f)
      Fail("a non-printable byte in the message", status.error_message());
  }
  return 0;
}
