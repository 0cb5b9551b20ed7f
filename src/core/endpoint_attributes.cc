#include "core/endpoint_attributes.h"

#include <cstdint>
#include <limits>
#include <string>
#include <utility>

#include <absl/strings/str_split.h>

#include "core/shown_text.h"

namespace lbkit {
namespace internal {
namespace {

grpc::Status Invalid(std::string_view pair, const std::string& why) {
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                      "endpoint attribute \"" + Shown(pair, 100) + "\": " + why);
}

// A character a key or value cannot hold: the separators, whitespace and
// control bytes. Bytes >= 0x80 (UTF-8) are kept as they are.
bool Unrepresentable(char c) {
  unsigned char u = static_cast<unsigned char>(c);
  return u <= 0x20 || u == 0x7f || c == ',' || c == ';' || c == '=';
}

// Returns the first unrepresentable character of `text`, described, or "".
std::string FirstBadCharacter(std::string_view text) {
  for (char c : text) {
    if (!Unrepresentable(c)) continue;
    unsigned char u = static_cast<unsigned char>(c);
    if (u > 0x20 && u != 0x7f) return std::string("'") + c + "'";
    return u == ' ' ? "a space" : "the byte " + Shown(std::string_view(&c, 1));
  }
  return "";
}

// 1..UINT32_MAX in plain decimal.
bool ParseWeight(std::string_view text, uint32_t* weight) {
  if (text.empty() || text.size() > 10 || text[0] == '0') return false;
  uint64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    value = value * 10 + static_cast<uint64_t>(c - '0');
  }
  if (value > std::numeric_limits<uint32_t>::max()) return false;
  *weight = static_cast<uint32_t>(value);
  return true;
}

}  // namespace

grpc::Status ParseEndpointAttributes(std::string_view text, EndpointAttributes* attributes) {
  if (text.size() > kMaxEndpointAttributesText) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "endpoint attributes \"" + Shown(text, 100) + "\" are longer than " +
                            std::to_string(kMaxEndpointAttributesText) + " bytes");
  }
  EndpointAttributes parsed;
  if (text.empty()) {  // no attributes (StrSplit would give one empty one)
    *attributes = std::move(parsed);
    return grpc::Status::OK;
  }
  bool has_weight = false;
  bool has_hash_key = false;
  for (absl::string_view piece : absl::StrSplit(absl::string_view(text.data(), text.size()), ';')) {
    const std::string_view pair(piece.data(), piece.size());
    if (pair.empty()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "endpoint attributes \"" + Shown(text, 100) +
                              "\": empty attribute (two ';' in a row, or one at an end)");
    }
    size_t equals = pair.find('=');
    if (equals == std::string_view::npos) return Invalid(pair, "no '=' (expected key=value)");
    std::string_view key = pair.substr(0, equals);
    std::string_view value = pair.substr(equals + 1);
    if (key.empty()) return Invalid(pair, "empty key");
    if (value.empty()) return Invalid(pair, "empty value");
    std::string bad = FirstBadCharacter(key);
    if (!bad.empty()) return Invalid(pair, "the key has " + bad + ", which it cannot hold");
    bad = FirstBadCharacter(value);
    if (!bad.empty()) return Invalid(pair, "the value has " + bad + ", which it cannot hold");
    if (key == "weight") {
      if (has_weight) return Invalid(pair, "weight given twice");
      if (!ParseWeight(value, &parsed.weight)) {
        return Invalid(pair,
                       "weight must be a whole number from 1 to 4294967295, in decimal digits "
                       "without sign or leading zero");
      }
      has_weight = true;
    } else if (key == "hash_key") {
      if (has_hash_key) return Invalid(pair, "hash_key given twice");
      parsed.hash_key = std::string(value);
      has_hash_key = true;
    } else if (!parsed.values.emplace(std::string(key), std::string(value)).second) {
      return Invalid(pair, "\"" + std::string(key) + "\" given twice");
    }
  }
  *attributes = std::move(parsed);
  return grpc::Status::OK;
}

}  // namespace internal
}  // namespace lbkit
