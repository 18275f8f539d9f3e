#!/usr/bin/env bash
# Installs what the tests need, starts the local stand-ins, runs every test.
# CI runs exactly this. Each stand-in has its own script in setup.d/: it
# installs (idempotently), starts its service, exports the variables the
# tests read, and appends the PIDs it started to FG_PIDS.
set -euo pipefail
cd "$(dirname "$0")/../.."
export FG_ROOT=$PWD
export FG_STACK="$FG_ROOT/.stack"   # installs and logs of the stand-ins (git-ignored)
mkdir -p "$FG_STACK"
FG_PIDS=()
cleanup() { for p in "${FG_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

say() { printf '\n== %s\n' "$*"; }

# Waits until a TCP port answers or fails loudly: a missing service must
# fail the run, never skip tests.
wait_port() {
  local name=$1 port=$2 log=$3
  for _ in $(seq 1 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "$name did not start on port $port; its log:" >&2
  tail -50 "$log" >&2 || true
  exit 1
}

# Python tools live in a project venv, never in the system.
say "python tools"
if [[ ! -x .venv/bin/python ]]; then python3 -m venv .venv; fi
export PATH="$FG_ROOT/.venv/bin:$PATH"
pip_install() { .venv/bin/pip install --quiet --disable-pip-version-check "$@"; }
# Pinned and called by path, so every machine lints with the same rules.
# This cfn-lint checks a SAM template as written (Globals merged, no SAM
# transform), so it cannot see what the transform adds -- the HTTP API's
# generated body referencing the functions, the execution roles and their
# managed policies. A circular dependency reported on the translated
# template is real: CloudFormation rejects the stack for it. Hence the
# pinned SAM translator too: "template" below lints and checks its output.
[[ -x .venv/bin/cfn-lint ]] && .venv/bin/cfn-lint --version | grep -q ' 1\.58\.' || pip_install 'cfn-lint==1.58.0'
.venv/bin/python -c 'import sys, samtranslator; sys.exit(samtranslator.__version__ != "1.115.0")' 2>/dev/null \
  || pip_install 'aws-sam-translator==1.115.0'

for s in infra/scripts/setup.d/*.sh; do
  [[ -e $s ]] || continue
  say "setup: $(basename "$s")"
  # shellcheck source=/dev/null
  source "$s"
done

# One build for lint and tests: the Bedrock structurer (feature `bedrock`;
# its request/response mapping is tested without an AWS call) is in it, so
# no second feature set recompiles the AWS crates.
FEATURES=(--features fieldgate/bedrock)

# `test.sh -- ARGS`: start the stand-ins, then run only `cargo test ARGS`
# (e.g. `-- -p fieldgate-tests --test integration flow::`), no lint.
if [[ ${1:-} == "--" ]]; then
  shift
  say "tests (selected)"
  cargo test --locked "${FEATURES[@]}" "$@"
  exit $?
fi

say "format"
cargo fmt --all -- --check

say "lint"
cargo clippy --workspace --all-targets --locked "${FEATURES[@]}" -- -D warnings

say "template"
.venv/bin/cfn-lint template.yaml
# What a deploy hands to CloudFormation: the SAM translation (offline, see
# translate.py), linted with 0 errors, and every function's role granting
# exactly what check_policies.py lists.
.venv/bin/python infra/scripts/template/translate.py template.yaml "$FG_STACK/template.translated.json"
.venv/bin/cfn-lint "$FG_STACK/template.translated.json" || {
  echo "cfn-lint failed on the translated template (above): $FG_STACK/template.translated.json" >&2
  exit 1
}
.venv/bin/python infra/scripts/template/check_policies.py "$FG_STACK/template.translated.json"

say "tests"
cargo test --workspace --locked "${FEATURES[@]}"
