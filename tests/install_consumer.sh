#!/usr/bin/env bash
# Installs lbkit from the build tree into a temporary prefix, then builds
# against that install, as a user does: the installed copies of the examples
# (share/doc/lbkit/examples) with find_package, and a small program with
# pkg-config that runs against the installed library (liblbkit.so when the
# build is BUILD_SHARED_LIBS=ON, as scripts/test.sh's is). Last, `cpack -G
# DEB` builds the Debian package, which must hold the library, the headers,
# lbkit.pc, the CMake package files and the docs.
set -euo pipefail
build_dir=$1
source_dir=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix
cmake --install "$build_dir" --prefix "$prefix" >/dev/null
test -f "$prefix/include/lbkit/lbkit.h"
test -f "$prefix/include/lbkit/version.h"
test -f "$prefix/lib/cmake/lbkit/lbkitConfig.cmake"
test -f "$prefix/lib/pkgconfig/lbkit.pc"
test -x "$prefix/bin/lbkit-echo-client"
docs=$prefix/share/doc/lbkit
for f in README.md docs/writing-a-policy.md examples/customloadbalancing/CMakeLists.txt \
         examples/load_aware/load_aware.cc proto/echo.proto; do
  test -f "$docs/$f" || { echo "not installed: share/doc/lbkit/$f"; exit 1; }
done
if [ -d "$prefix/include/lbkit" ] && ls "$prefix/include/lbkit" | grep -qv -e '\.h$' -e '^testing$'; then
  echo "unexpected files in the installed include/lbkit"; exit 1
fi
shared=0
if [ -e "$prefix/lib/liblbkit.so" ]; then
  shared=1
  soname=$(readelf -d "$prefix/lib/liblbkit.so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
  test -e "$prefix/lib/$soname" || { echo "no $soname beside liblbkit.so"; exit 1; }
  test ! -e "$prefix/lib/liblbkit.a" || { echo "both liblbkit.so and liblbkit.a installed"; exit 1; }
fi
cmake -S "$docs/examples/customloadbalancing" -B "$work/example" \
  -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$work/example" -j2 --target lbkit-echo-client
echo "built the installed example against the installed lbkit: OK"

# A plain user of the channel does not get nlohmann-json through lbkit's
# channel header (policy authors do, through balancer.h).
cat >"$work/plain.cc" <<'CC'
#include <lbkit/channel.h>
#ifdef NLOHMANN_JSON_VERSION_MAJOR
#error "lbkit/channel.h pulls in nlohmann-json"
#endif
int main() { return 0; }
CC
g++ -std=c++17 -fsyntax-only -I"$prefix/include" "$work/plain.cc"
echo "lbkit/channel.h needs no nlohmann-json: OK"

# A second policy, load_aware, written against the installed headers only: it
# builds, its unit test (lbkit's testing kit, no network) passes, and it
# balances real calls by weight between two installed echo servers.
cmake -S "$docs/examples/load_aware" -B "$work/load_aware" \
  -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$work/load_aware" -j2
"$work/load_aware/load_aware_test" --gtest_brief=1
"$prefix/bin/lbkit-echo-server" --addrs 127.0.0.1:0,127.0.0.1:0 --report-load \
  >"$work/server.log" 2>&1 &
server_pid=$!
trap 'kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 500); do
  [ "$(grep -c '^serving on' "$work/server.log" || true)" -ge 2 ] && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log"; exit 1; }
  sleep 0.02
done
mapfile -t addrs < <(sed -n 's/^serving on //p' "$work/server.log")
[ "${#addrs[@]}" -eq 2 ] || { echo "echo server did not start:"; cat "$work/server.log"; exit 1; }
"$work/load_aware/load-aware-client" --count 400 \
  --target "static:///${addrs[0]};weight=3,${addrs[1]}" >"$work/split"
cat "$work/split"
heavy=$(sed -n "s/^served by ${addrs[0]}: //p" "$work/split")
light=$(sed -n "s/^served by ${addrs[1]}: //p" "$work/split")
# 3:1 expected (both backends are one process, so they report the same CPU);
# more than 3:2 holds with a margin of about 7 standard deviations.
[ -n "$heavy" ] && [ -n "$light" ] && [ $((2 * heavy)) -gt $((3 * light)) ] ||
  { echo "expected about 3:1 for ${addrs[0]}"; exit 1; }
echo "load_aware built, unit-tested and ran against the installed lbkit: OK"

# A program built with pkg-config alone, against the installed library: it
# checks that the lbkit it runs with is the one its headers name, and makes
# a real call through an lbkit channel to the installed echo server.
export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
pc_flags=(--cflags --libs)
[ "$shared" -eq 1 ] || pc_flags+=(--static)  # liblbkit.a: its dependencies too
[ "$(pkg-config --modversion lbkit)" = "$(sed -n 's/^#define LBKIT_VERSION_STRING "\(.*\)"$/\1/p' "$prefix/include/lbkit/version.h")" ] ||
  { echo "lbkit.pc's version is not version.h's"; exit 1; }
mkdir "$work/pc"
protoc --cpp_out="$work/pc" --grpc_out="$work/pc" --plugin=protoc-gen-grpc="$(command -v grpc_cpp_plugin)" \
  -I "$docs/proto" "$docs/proto/echo.proto"
cat >"$work/pc/consumer.cc" <<'CC'
#include <grpcpp/grpcpp.h>
#include <lbkit/lbkit.h>

#include <chrono>
#include <cstdio>
#include <cstring>

#include "echo.grpc.pb.h"

int main(int argc, char** argv) {
  std::printf("lbkit::Version() %s, LBKIT_VERSION_STRING %s\n", lbkit::Version(),
              LBKIT_VERSION_STRING);
  if (argc != 2 || std::strcmp(lbkit::Version(), LBKIT_VERSION_STRING) != 0) return 1;
  auto channel = lbkit::CreateChannel(std::string("static:///") + argv[1],
                                      grpc::InsecureChannelCredentials());
  auto stub = grpc::examples::echo::Echo::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  context.set_wait_for_ready(true);
  grpc::examples::echo::EchoRequest request;
  request.set_message("pkg-config");
  grpc::examples::echo::EchoResponse response;
  grpc::Status status = stub->UnaryEcho(&context, request, &response);
  std::printf("reply: %s (%s)\n", response.message().c_str(), status.error_message().c_str());
  return status.ok() && response.message().rfind("pkg-config (from ", 0) == 0 ? 0 : 1;
}
CC
# shellcheck disable=SC2046  # pkg-config's output is words
g++ -std=c++17 -o "$work/pc/consumer" "$work/pc/consumer.cc" "$work/pc/echo.pb.cc" \
  "$work/pc/echo.grpc.pb.cc" -I"$work/pc" $(pkg-config "${pc_flags[@]}" lbkit protobuf)
if [ "$shared" -eq 1 ]; then
  LD_LIBRARY_PATH=$prefix/lib ldd "$work/pc/consumer" >"$work/pc/ldd"
  grep -q "$prefix/lib/liblbkit.so" "$work/pc/ldd" ||
    { echo "the pkg-config consumer does not load the installed liblbkit.so"; exit 1; }
fi
LD_LIBRARY_PATH=$prefix/lib "$work/pc/consumer" "${addrs[0]}"
echo "a pkg-config consumer built and ran against the installed lbkit: OK"

# The Debian package (cpack -G DEB, as README.md says), in a scratch copy of
# the CPack config so that the build tree gets no _CPack_Packages or .deb.
if command -v dpkg-deb >/dev/null; then
  (cd "$work" && cpack -G DEB --config "$build_dir/CPackConfig.cmake" -B "$work/deb" >/dev/null)
  deb=$(ls "$work"/deb/*.deb)
  dpkg-deb -I "$deb" >"$work/deb.info"
  grep -q '^ Depends: .*libgrpc++-dev' "$work/deb.info" || { echo "Depends lacks libgrpc++-dev"; exit 1; }
  dpkg-deb -c "$deb" >"$work/deb.list"
  lib_re='/liblbkit\.a$'
  [ "$shared" -eq 0 ] || lib_re='/liblbkit\.so\.[0-9.]*$'
  for want in "$lib_re" '/include/lbkit/lbkit\.h$' '/include/lbkit/version\.h$' \
              '/include/lbkit/testing/fake_helper\.h$' '/pkgconfig/lbkit\.pc$' \
              '/cmake/lbkit/lbkitConfig\.cmake$' '/share/doc/lbkit/README\.md$' \
              '/share/doc/lbkit/examples/load_aware/load_aware\.cc$'; do
    grep -Eq "$want" "$work/deb.list" || { echo "$(basename "$deb") lacks $want"; cat "$work/deb.list"; exit 1; }
  done
  if grep -q '/bin/' "$work/deb.list"; then echo "the .deb holds the demo binaries"; exit 1; fi
  echo "$(basename "$deb") built with the library, headers, lbkit.pc, CMake files and docs: OK"
fi
