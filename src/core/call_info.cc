#include "core/call_info.h"

#include <iterator>
#include <memory>
#include <string_view>
#include <tuple>

#include "lbkit/picker.h"
#include "orca/load_report.h"

namespace lbkit {
namespace internal {
namespace {

// gRPC's rule for keys (validate_metadata.cc): [0-9a-z_.-]+.
bool IsLegalKeyChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
}

// Why `key: value` cannot be sent, or "" if it can.
std::string WhyInvalid(std::string_view key, std::string_view value) {
  if (key.empty()) return "the key is empty";
  for (char c : key) {
    if (!IsLegalKeyChar(c)) {
      return "keys may hold only lowercase letters, digits, '-', '_' and '.'";
    }
  }
  if (key.substr(0, 5) == "grpc-") return "keys starting with \"grpc-\" are reserved for gRPC";
  if (key == "content-type" || key == "te" || key == "user-agent" || key == "host") {
    return "gRPC writes this header itself";
  }
  const bool binary = key.size() >= 4 && key.substr(key.size() - 4) == "-bin";
  if (!binary) {
    for (char c : value) {
      if (c < 0x20 || c > 0x7e) {
        return "the value of a key not ending in \"-bin\" must be printable ASCII";
      }
    }
  }
  return "";
}

}  // namespace

grpc::Status CheckPickMetadata(const std::vector<std::pair<std::string, std::string>>& metadata) {
  for (const auto& [key, value] : metadata) {
    std::string why = WhyInvalid(key, value);
    if (!why.empty()) {
      return grpc::Status(grpc::StatusCode::INTERNAL,
                          "lbkit: picker attached invalid metadata: key \"" + key + "\": " + why);
    }
  }
  return grpc::Status::OK;
}

}  // namespace internal

CallDoneInfo::CallDoneInfo(grpc::Status status, const Metadata* trailing_metadata)
    : status_(std::move(status)), trailing_metadata_(trailing_metadata) {}

CallDoneInfo::~CallDoneInfo() = default;

const CallDoneInfo::Metadata& CallDoneInfo::trailing_metadata() const {
  static const Metadata* const empty = new Metadata();
  return trailing_metadata_ != nullptr ? *trailing_metadata_ : *empty;
}

const LoadReport* CallDoneInfo::load_report() const {
  if (load_report_parsed_) return load_report_.get();
  load_report_parsed_ = true;
  if (trailing_metadata_ == nullptr) return nullptr;
  // gRPC's own trailer first, should a gRPC ever pass it through (1.51 does
  // not; load_report.h), then lbkit's copy; the last one, should a backend
  // send several.
  auto [begin, end] = trailing_metadata_->equal_range(kLoadReportTrailer);
  if (begin == end) std::tie(begin, end) = trailing_metadata_->equal_range(kLbkitLoadReportTrailer);
  if (begin == end) return nullptr;
  const grpc::string_ref& bytes = std::prev(end)->second;
  auto report = std::make_unique<LoadReport>();
  if (internal::ParseLoadReport(std::string_view(bytes.data(), bytes.size()), report.get())) {
    load_report_ = std::move(report);
  }
  return load_report_.get();
}

}  // namespace lbkit
