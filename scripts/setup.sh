#!/usr/bin/env bash
# Installs kick's build and test dependencies from Debian's packages (idempotent; needs root or sudo).
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache git pkg-config unzip
  libtorch-dev libopenblas0-pthread libeigen3-dev libfmt-dev catch2 nlohmann-json3-dev libcli11-dev
  libpcre2-dev libyaml-cpp-dev python3-pip
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  echo "setup: installing ${missing[*]}"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "setup: dependencies present"
