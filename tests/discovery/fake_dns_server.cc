#include "discovery/fake_dns_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <thread>

#include <gtest/gtest.h>

namespace lbkit_test {
namespace {

std::string Canonical(std::string name) {
  if (!name.empty() && name.back() == '.') name.pop_back();
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return name;
}

void Put16(std::string* out, int value) {
  out->push_back(static_cast<char>((value >> 8) & 0xff));
  out->push_back(static_cast<char>(value & 0xff));
}

int Get16(const std::string& in, size_t at) {
  return (static_cast<unsigned char>(in[at]) << 8) | static_cast<unsigned char>(in[at + 1]);
}

// One answer record for the question's name (a pointer to offset 12).
void PutRecord(std::string* out, int type, const std::string& data) {
  out->append("\xc0\x0c", 2);
  Put16(out, type);
  Put16(out, 1);               // class IN
  out->append("\0\0\0\1", 4);  // TTL 1 s
  Put16(out, static_cast<int>(data.size()));
  out->append(data);
}

}  // namespace

FakeDnsServer::FakeDnsServer() {
  socket_ = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  EXPECT_GE(socket_, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  EXPECT_EQ(bind(socket_, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  socklen_t length = sizeof(address);
  EXPECT_EQ(getsockname(socket_, reinterpret_cast<sockaddr*>(&address), &length), 0);
  port_ = ntohs(address.sin_port);
  EXPECT_EQ(pipe2(stop_, O_CLOEXEC), 0);
  thread_ = std::thread([this] { Serve(); });
}

FakeDnsServer::~FakeDnsServer() {
  char byte = 0;
  EXPECT_EQ(write(stop_[1], &byte, 1), 1);
  thread_.join();
  close(stop_[0]);
  close(stop_[1]);
  close(socket_);
}

void FakeDnsServer::SetA(const std::string& name, std::vector<std::string> addresses) {
  std::lock_guard<std::mutex> lock(mu_);
  table_[Canonical(name)].a = std::move(addresses);
}

void FakeDnsServer::SetAaaa(const std::string& name, std::vector<std::string> addresses) {
  std::lock_guard<std::mutex> lock(mu_);
  table_[Canonical(name)].aaaa = std::move(addresses);
}

void FakeDnsServer::SetTxt(const std::string& name, std::vector<std::vector<std::string>> records) {
  std::lock_guard<std::mutex> lock(mu_);
  table_[Canonical(name)].txt = std::move(records);
}

void FakeDnsServer::Remove(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  table_.erase(Canonical(name));
}

int FakeDnsServer::Queries(const std::string& name, Type type) const {
  return static_cast<int>(QueryTimes(name, type).size());
}

std::vector<std::chrono::steady_clock::time_point> FakeDnsServer::QueryTimes(
    const std::string& name, Type type) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = queries_.find({Canonical(name), static_cast<int>(type)});
  return it == queries_.end() ? std::vector<std::chrono::steady_clock::time_point>{} : it->second;
}

void FakeDnsServer::Serve() {
  for (;;) {
    pollfd fds[2] = {{socket_, POLLIN, 0}, {stop_[0], POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) continue;
    if (fds[1].revents != 0) return;
    if (fds[0].revents == 0) continue;
    char buffer[1500];
    sockaddr_in from{};
    socklen_t from_length = sizeof(from);
    ssize_t n = recvfrom(socket_, buffer, sizeof(buffer), 0, reinterpret_cast<sockaddr*>(&from),
                         &from_length);
    if (n <= 0) continue;
    std::string reply = Answer(std::string(buffer, static_cast<size_t>(n)));
    if (reply.empty()) continue;
    sendto(socket_, reply.data(), reply.size(), 0, reinterpret_cast<sockaddr*>(&from), from_length);
  }
}

std::string FakeDnsServer::Answer(const std::string& query) {
  if (query.size() < 12 || Get16(query, 4) < 1) return "";
  // The first question: labels (no compression in a query), type, class.
  std::string name;
  size_t at = 12;
  while (at < query.size() && query[at] != 0) {
    size_t length = static_cast<unsigned char>(query[at]);
    if ((length & 0xc0) != 0 || at + 1 + length >= query.size()) return "";
    if (!name.empty()) name += '.';
    name.append(query, at + 1, length);
    at += 1 + length;
  }
  if (at + 5 > query.size()) return "";
  int type = Get16(query, at + 1);
  size_t question_end = at + 5;
  name = Canonical(name);

  std::vector<std::string> answers;  // rdata of each record
  bool known = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    queries_[{name, type}].push_back(std::chrono::steady_clock::now());
    if (silent_) return "";
    auto it = table_.find(name);
    known = it != table_.end();
    if (known && type == static_cast<int>(Type::kA)) {
      for (const std::string& text : it->second.a) {
        in_addr address{};
        EXPECT_EQ(inet_pton(AF_INET, text.c_str(), &address), 1) << text;
        answers.emplace_back(reinterpret_cast<const char*>(&address), sizeof(address));
      }
    } else if (known && type == static_cast<int>(Type::kAaaa)) {
      for (const std::string& text : it->second.aaaa) {
        in6_addr address{};
        EXPECT_EQ(inet_pton(AF_INET6, text.c_str(), &address), 1) << text;
        answers.emplace_back(reinterpret_cast<const char*>(&address), sizeof(address));
      }
    } else if (known && type == static_cast<int>(Type::kTxt)) {
      for (const auto& strings : it->second.txt) {
        std::string data;
        for (const std::string& text : strings) {
          EXPECT_LE(text.size(), 255u);
          data.push_back(static_cast<char>(text.size()));
          data.append(text);
        }
        answers.push_back(std::move(data));
      }
    }
  }
  std::string reply = query.substr(0, 2);  // the query's id
  // QR, the query's opcode and RD, AA; RA and the response code.
  reply.push_back(static_cast<char>(0x80 | (query[2] & 0x79) | 0x04));
  reply.push_back(static_cast<char>(0x80 | (known ? 0 : 3)));  // NOERROR or NXDOMAIN
  Put16(&reply, 1);
  Put16(&reply, static_cast<int>(answers.size()));
  Put16(&reply, 0);
  Put16(&reply, 0);
  reply.append(query, 12, question_end - 12);
  for (const std::string& data : answers) PutRecord(&reply, type, data);
  EXPECT_LE(reply.size(), 512u) << "keep test answers small enough for UDP";
  return reply;
}

}  // namespace lbkit_test
