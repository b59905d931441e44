#!/usr/bin/env bash
# Install what `make run` / `make test` need and is missing: Debian packages (as root via apt-get,
# otherwise a message naming them) and the npm packages pinned in package-lock.json. Extra Debian
# packages a target needs beyond these (the benchmarks' plotting) are passed as arguments.
set -euo pipefail
cd "$(dirname "$0")/.."

# libopenblas0-pthread: without it Debian's torch falls back to reference BLAS, and its transposed
# convolutions (the T&R decoder) run 3x slower (bench/RESULTS.md).
APT_PACKAGES=(python3-torch python3-numpy python3-pytest dataset-fashion-mnist libopenblas0-pthread "$@")

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    echo "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
  else
    echo "missing Debian packages: ${missing[*]}" >&2
    echo "install them with: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi

# npm ci only when the lockfile changed since the last install.
if [ ! -f node_modules/.trapdoor-installed ] || [ package-lock.json -nt node_modules/.trapdoor-installed ]; then
  npm ci --no-audit --no-fund
  touch node_modules/.trapdoor-installed
fi

scripts/find-python.sh >/dev/null
