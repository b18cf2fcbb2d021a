#!/usr/bin/env bash
# Installs every Debian package procpool needs to build, test and lint. Idempotent: when all the
# packages are already installed it only says so (no apt-get update, no network).
set -euo pipefail

PACKAGES=(
  cmake
  g++
  make
  pkg-config
  libboost1.81-dev
  libfmt-dev
  catch2
  libcurl4-openssl-dev
  nlohmann-json3-dev
  libcpp-httplib-dev
  python3
  clang-format
  doxygen
  clang-14
  libclang-rt-14-dev
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
  [ "$status" = "installed" ] || missing+=("$pkg")
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages already installed"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=sudo
  else
    echo "install-deps: missing ${missing[*]}, and not root with no sudo to install them" >&2
    exit 1
  fi
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  "${PACKAGES[@]}" >/dev/null
echo "install-deps: done"
