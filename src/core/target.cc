#include <cctype>

#include "core/shown_text.h"

#include "lbkit/resolver.h"

namespace lbkit {

grpc::Status ParseTarget(const std::string& uri, Target* target) {
  auto invalid = [&uri](const std::string& why) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "invalid target \"" + internal::Shown(uri) + "\": " + why);
  };
  size_t colon = uri.find(':');
  if (colon == std::string::npos) {
    return invalid("no scheme (expected scheme:///endpoint, e.g. static:///localhost:50050)");
  }
  std::string scheme = uri.substr(0, colon);
  if (scheme.empty() || !std::isalpha(static_cast<unsigned char>(scheme[0]))) {
    return invalid("the scheme must start with a letter");
  }
  for (char c : scheme) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '+' && c != '-' && c != '.') {
      return invalid("bad character '" + internal::Shown(std::string(1, c)) + "' in the scheme");
    }
  }
  Target parsed;
  parsed.uri = uri;
  parsed.scheme = scheme;
  std::string rest = uri.substr(colon + 1);
  if (rest.rfind("//", 0) == 0) {
    size_t slash = rest.find('/', 2);
    if (slash == std::string::npos) {
      parsed.authority = rest.substr(2);
    } else {
      parsed.authority = rest.substr(2, slash - 2);
      parsed.endpoint = rest.substr(slash + 1);
    }
  } else {
    parsed.endpoint = rest;
  }
  *target = std::move(parsed);
  return grpc::Status::OK;
}

}  // namespace lbkit
