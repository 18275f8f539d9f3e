#!/usr/bin/env bash
# Installs what the tests need and runs all of them. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

say() { printf '\n== %s\n' "$*"; }

# Python tools (cfn-lint) live in a project venv, never in the system.
say "test tools"
if [[ ! -x .venv/bin/cfn-lint ]]; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check 'cfn-lint>=1,<2'
fi

say "format"
cargo fmt --all -- --check

say "lint"
cargo clippy --workspace --all-targets --locked -- -D warnings

say "template"
.venv/bin/cfn-lint template.yaml

say "tests"
cargo test --workspace --locked
