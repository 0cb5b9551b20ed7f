#include "core/address.h"

#include <arpa/inet.h>
#include <sys/un.h>

#include <cctype>

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

grpc::Status CheckAddress(const std::string& address) {
  if (address.rfind("unix-abstract:", 0) == 0) {
    return CheckSocketPath(address, address.substr(sizeof("unix-abstract:") - 1));
  }
  if (address.rfind("unix:", 0) == 0) {
    std::string path = address.substr(sizeof("unix:") - 1);
    if (path.rfind("//", 0) == 0) path = path.substr(2);  // unix:///abs: empty authority
    return CheckSocketPath(address, path);
  }
  size_t colon = address.rfind(':');
  if (colon == std::string::npos) return Bad(address, "no port (expected host:port)");
  std::string host = address.substr(0, colon);
  std::string port = address.substr(colon + 1);
  if (host.empty()) return Bad(address, "empty host");
  if (host.front() == '[' || host.back() == ']') {
    if (host.size() < 2 || host.front() != '[' || host.back() != ']') {
      return Bad(address, "unbalanced brackets around an IPv6 host");
    }
    std::string literal = host.substr(1, host.size() - 2);
    size_t zone = literal.find('%');  // fe80::1%eth0
    if (zone != std::string::npos) {
      if (zone + 1 == literal.size()) return Bad(address, "empty IPv6 zone");
      literal = literal.substr(0, zone);
    }
    in6_addr parsed;
    if (literal.empty() || inet_pton(AF_INET6, literal.c_str(), &parsed) != 1) {
      return Bad(address, "not an IPv6 address between the brackets");
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
  if (port.empty() || port.size() > 5) return Bad(address, "port must be a number from 1 to 65535");
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
