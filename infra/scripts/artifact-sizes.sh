#!/usr/bin/env bash
# Artifact size of each Lambda function, built alone as `sam build` builds
# it (`cargo build --release -p <fn>`: only that function's features of the
# fieldgate crate, no workspace unification), stripped by the release
# profile, zipped as the deployment package holds it (`bootstrap`, zip's
# default deflate). Usage: artifact-sizes.sh [function ...] (default all
# five). Release builds are slow: use a target directory of its own.
set -euo pipefail
cd "$(dirname "$0")/../.."
target=${CARGO_TARGET_DIR:-target}
fns=("$@")
[[ ${#fns[@]} -gt 0 ]] || fns=(qr-intake structure approval commit mcp)
rows=()
for f in "${fns[@]}"; do
  cargo build --release --offline -p "fieldgate-$f" >&2
  bin="$target/release/$f"
  tmp=$(mktemp -d)
  cp "$bin" "$tmp/bootstrap"
  (cd "$tmp" && zip -q package.zip bootstrap)
  rows+=("$(printf '%-10s %10.2f MB %10.2f MB' "$f" \
    "$(echo "$(stat -c %s "$bin") / 1000000" | bc -l)" \
    "$(echo "$(stat -c %s "$tmp/package.zip") / 1000000" | bc -l)")")
  rm -rf "$tmp"
done
printf '%-10s %13s %13s\n' function stripped zipped
printf '%s\n' "${rows[@]}"
