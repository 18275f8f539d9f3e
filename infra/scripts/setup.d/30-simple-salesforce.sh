# simple-salesforce (PyPI): a Salesforce client nobody here wrote checks the
# emulator (tests/simple_salesforce.rs runs tests/thirdparty/*.py with it).
# Sourced by test.sh: pip_install and the .venv come from there.
if ! .venv/bin/python -c 'import simple_salesforce' 2>/dev/null; then
  pip_install 'simple-salesforce>=1.12.6,<2'
fi
.venv/bin/python -c 'import simple_salesforce, jwt, cryptography' \
  || { echo "simple-salesforce did not install into .venv" >&2; exit 1; }
