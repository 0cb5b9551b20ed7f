#include "policies/duration.h"

#include <cstdint>
#include <string>

namespace lbkit {
namespace internal {

grpc::Status ParseDurationField(const nlohmann::json& json, const char* name,
                                std::chrono::nanoseconds* out) {
  auto field = json.find(name);
  if (field == json.end()) return grpc::Status::OK;
  auto bad = [&](const std::string& why) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        std::string(name) + " must be a duration string such as \"10s\" or " +
                            "\"0.5s\"" + why + ", got " + field->dump());
  };
  if (!field->is_string()) return bad("");
  const std::string& text = field->get_ref<const std::string&>();
  if (!text.empty() && text[0] == '-') return bad(" and not negative");
  // protobuf's own bound: 315,576,000,000 seconds (10,000 years).
  constexpr uint64_t kMaxSeconds = 315'576'000'000;
  size_t i = 0;
  uint64_t seconds = 0;
  for (; i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i) {
    seconds = seconds * 10 + static_cast<uint64_t>(text[i] - '0');
    if (seconds > kMaxSeconds) return bad(" (at most 10000 years)");
  }
  if (i == 0) return bad("");
  uint64_t nanos = 0;
  if (i < text.size() && text[i] == '.') {
    ++i;
    size_t digits = 0;
    for (; i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i, ++digits) {
      if (digits == 9) return bad(" (at most nine fractional digits)");
      nanos = nanos * 10 + static_cast<uint64_t>(text[i] - '0');
    }
    if (digits == 0) return bad("");
    for (; digits < 9; ++digits) nanos *= 10;
  }
  if (i + 1 != text.size() || text[i] != 's') return bad("");
  constexpr uint64_t kLongestSeconds =
      std::chrono::duration_cast<std::chrono::seconds>(kLongestDuration).count();
  if (seconds >= kLongestSeconds) {
    *out = kLongestDuration;
  } else {
    *out = std::chrono::seconds(seconds) + std::chrono::nanoseconds(nanos);
  }
  return grpc::Status::OK;
}

}  // namespace internal
}  // namespace lbkit
