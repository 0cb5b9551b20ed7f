#include "core/address.h"

#include <arpa/inet.h>
#include <sys/un.h>

#include <cctype>

#include <absl/strings/match.h>
#include <absl/strings/str_cat.h>
#include <absl/strings/strip.h>

#include "core/shown_text.h"

namespace lbkit {
namespace internal {
namespace {

grpc::Status Bad(const std::string& address, const std::string& why) {
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                      "bad address \"" + Shown(address) + "\": " + why);
}

grpc::Status CheckSocketPath(const std::string& address, const std::string& path) {
  if (path.empty()) return Bad(address, "empty path");
  // The kernel's sockaddr_un holds the path and, for a named socket, its NUL.
  constexpr size_t kMax = sizeof(sockaddr_un{}.sun_path) - 1;
  if (path.size() > kMax) {
    return Bad(address, "socket path is " + std::to_string(path.size()) +
                            " bytes, longer than the system's limit of " + std::to_string(kMax));
  }
  if (path.find('\0') != std::string::npos) return Bad(address, "NUL byte in path");
  return grpc::Status::OK;
}

bool IsDnsNameCharacter(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_';
}

}  // namespace

grpc::Status SplitHostPort(absl::string_view text, HostPort* out) {
  auto invalid = [](const char* why) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, why);
  };
  HostPort result;
  if (absl::ConsumePrefix(&text, "[")) {
    const size_t close = text.find(']');
    if (close == absl::string_view::npos) return invalid("'[' without ']'");
    result.bracketed = true;
    result.host = std::string(text.substr(0, close));
    if (IpFamily(result.host) != AF_INET6) {
      return invalid("not an IPv6 address between the brackets");
    }
    absl::string_view rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (!absl::ConsumePrefix(&rest, ":")) return invalid("text after ']' that is not \":port\"");
      result.has_port = true;
      result.port = std::string(rest);
    }
  } else {
    const size_t colon = text.find(':');
    if (colon != absl::string_view::npos && text.find(':', colon + 1) == absl::string_view::npos) {
      result.has_port = true;
      result.host = std::string(text.substr(0, colon));
      result.port = std::string(text.substr(colon + 1));
    } else {
      result.host = std::string(text);  // no port, or an IPv6 literal without brackets
    }
  }
  if (result.host.empty()) return invalid("empty host");
  if (result.has_port && result.port.empty()) return invalid("empty port after ':'");
  *out = std::move(result);
  return grpc::Status::OK;
}

std::string JoinHostPort(absl::string_view host, absl::string_view port) {
  return host.find(':') == absl::string_view::npos ? absl::StrCat(host, ":", port)
                                                   : absl::StrCat("[", host, "]:", port);
}

int IpFamily(absl::string_view host) {
  const std::string text(host.substr(0, host.find('%')));  // inet_pton wants no zone, and a NUL
  in_addr v4;
  if (host.size() == text.size() && inet_pton(AF_INET, text.c_str(), &v4) == 1) return AF_INET;
  in6_addr v6;
  if (inet_pton(AF_INET6, text.c_str(), &v6) == 1) return AF_INET6;
  return 0;
}

int AddressIpFamily(absl::string_view address) {
  HostPort split;
  if (absl::StartsWith(address, "unix") || !SplitHostPort(address, &split).ok()) return 0;
  return IpFamily(split.host);
}

bool IsWildcardAddress(absl::string_view address) {
  HostPort split;
  if (absl::StartsWith(address, "unix") || !SplitHostPort(address, &split).ok()) return false;
  in_addr v4;
  if (inet_pton(AF_INET, split.host.c_str(), &v4) == 1) return v4.s_addr == INADDR_ANY;
  in6_addr v6;
  return inet_pton(AF_INET6, split.host.c_str(), &v6) == 1 && IN6_IS_ADDR_UNSPECIFIED(&v6);
}

grpc::Status CheckAddress(const std::string& address) {
  if (address.rfind("unix-abstract:", 0) == 0) {
    return CheckSocketPath(address, address.substr(sizeof("unix-abstract:") - 1));
  }
  if (address.rfind("unix:", 0) == 0) {
    std::string path = address.substr(sizeof("unix:") - 1);
    if (path.rfind("//", 0) == 0) path = path.substr(2);  // unix:///abs: empty authority
    return CheckSocketPath(address, path);
  }
  HostPort split;
  grpc::Status status = SplitHostPort(address, &split);
  if (!status.ok()) return Bad(address, status.error_message());
  const std::string& host = split.host;
  if (split.bracketed) {
    const size_t zone = host.find('%');  // fe80::1%eth0
    if (zone != std::string::npos && zone + 1 == host.size()) {
      return Bad(address, "empty IPv6 zone");
    }
  } else if (host.find(':') != std::string::npos) {
    return Bad(address, "IPv6 hosts must be in brackets, e.g. [::1]:50050");
  } else {
    if (host.size() > 253) return Bad(address, "host name longer than 253 characters");
    for (char c : host) {
      if (!IsDnsNameCharacter(c)) {
        return Bad(address, "host has a character no host name has");
      }
    }
  }
  if (!split.has_port) return Bad(address, "no port (expected host:port)");
  const std::string& port = split.port;
  if (port.size() > 5) return Bad(address, "port must be a number from 1 to 65535");
  for (char c : port) {
    if (!std::isdigit(static_cast<unsigned char>(c))) {
      return Bad(address, "port must be a number from 1 to 65535");
    }
  }
  int value = std::stoi(port);
  if (value < 1 || value > 65535) return Bad(address, "port must be a number from 1 to 65535");
  return grpc::Status::OK;
}

}  // namespace internal
}  // namespace lbkit
