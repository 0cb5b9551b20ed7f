#!/usr/bin/env bash
# Installs every build and test dependency of lbkit from Debian's packages,
# and any further packages named as arguments (scripts/fuzz.sh adds clang's).
# Idempotent: when everything is already installed it does nothing (no
# apt-get update, no network). Needs root (or sudo) only when something is
# missing.
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  dpkg-dev file  # cpack -G DEB: dpkg-shlibdeps, and `file` to find the ELF files
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  nlohmann-json3-dev libxxhash-dev libc-ares-dev libcli11-dev
  etcd-server etcd-client
  libgtest-dev libgmock-dev libbenchmark-dev
  "$@"
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi

echo "lbkit: installing ${missing[*]}" >&2
sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    sudo_cmd=(sudo)
  else
    echo "lbkit: missing packages (${missing[*]}) and not root; run as root or install them" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
