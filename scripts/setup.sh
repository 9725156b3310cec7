#!/usr/bin/env bash
# Installs kick's build and test dependencies from Debian's packages (idempotent; needs root or sudo).
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache git pkg-config unzip
  libtorch-dev libopenblas0-pthread libopenblas0-openmp libeigen3-dev libfmt-dev catch2 nlohmann-json3-dev libcli11-dev
  libpcre2-dev libyaml-cpp-dev zlib1g-dev libcpp-httplib-dev curl python3-pip
  python3-dev pybind11-dev python3-torch python3-numpy python3-pytest
  slurm-wlm munge chromium   # cli.slurm_sweep (a one-node cluster started by the test), cli.report_chromium
  clang libclang-rt-dev      # the libFuzzer targets (scripts/fuzz.sh)
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
sudo_cmd=""
[ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# LibTorch runs its own ops on OpenMP threads; OpenBLAS's pthread build runs GEMMs on a second pool, and the
# two fight over the cores (docs/footguns.md: SmolLM2 prefill 298 vs 1018 tokens/s). Debian ranks the
# pthread build first, so select the OpenMP build explicitly.
openmp_dir=/usr/lib/x86_64-linux-gnu/openblas-openmp
if [ -e "$openmp_dir/libopenblas.so.0" ] &&
   [ "$(readlink -f /usr/lib/x86_64-linux-gnu/libopenblas.so.0)" != "$(readlink -f "$openmp_dir/libopenblas.so.0")" ]; then
  echo "setup: selecting OpenBLAS's OpenMP build (libopenblas.so.0, libblas.so.3, liblapack.so.3)"
  $sudo_cmd update-alternatives --quiet --set libopenblas.so.0-x86_64-linux-gnu "$openmp_dir/libopenblas.so.0"
  $sudo_cmd update-alternatives --quiet --set libblas.so.3-x86_64-linux-gnu "$openmp_dir/libblas.so.3"
  $sudo_cmd update-alternatives --quiet --set liblapack.so.3-x86_64-linux-gnu "$openmp_dir/liblapack.so.3"
fi
echo "setup: dependencies present"
