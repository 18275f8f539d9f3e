#!/usr/bin/env bash
# Artifact size of each Lambda function, built alone as `sam build` builds
# it (`cargo lambda build --release --arm64 -p <fn>`: only that function's
# features of the fieldgate crate, no workspace unification), stripped by
# the release profile, zipped as the deployment package holds it
# (`bootstrap`, zip's default deflate).
#
# Usage: artifact-sizes.sh [--x86] [function ...]   (default: all five, arm64)
# arm64 needs cargo-lambda and ziglang (README, Deploy); --x86 builds with
# plain cargo for this machine. Release builds are slow: use a target
# directory of its own (CARGO_TARGET_DIR).
set -euo pipefail
cd "$(dirname "$0")/../.."
target=${CARGO_TARGET_DIR:-target}
arch=arm64
if [[ ${1:-} == --x86 ]]; then arch=x86_64; shift; fi
fns=("$@")
[[ ${#fns[@]} -gt 0 ]] || fns=(qr-intake structure approval commit mcp)
if [[ $arch == arm64 ]] && ! cargo lambda --version >/dev/null 2>&1; then
  echo "cargo-lambda is not installed: pip install cargo-lambda ziglang (README, Deploy), or pass --x86" >&2
  exit 1
fi
rows=()
for f in "${fns[@]}"; do
  if [[ $arch == arm64 ]]; then
    cargo lambda build --release --arm64 -p "fieldgate-$f" >&2
    bin="$target/lambda/$f/bootstrap"
  else
    cargo build --release -p "fieldgate-$f" >&2
    bin="$target/release/$f"
  fi
  tmp=$(mktemp -d)
  cp "$bin" "$tmp/bootstrap"
  (cd "$tmp" && zip -q package.zip bootstrap)
  rows+=("$(printf '%-10s %10.2f MB %10.2f MB' "$f" \
    "$(echo "$(stat -c %s "$bin") / 1000000" | bc -l)" \
    "$(echo "$(stat -c %s "$tmp/package.zip") / 1000000" | bc -l)")")
  rm -rf "$tmp"
done
printf 'architecture: %s\n' "$arch"
printf '%-10s %13s %13s\n' function stripped zipped
printf '%s\n' "${rows[@]}"
