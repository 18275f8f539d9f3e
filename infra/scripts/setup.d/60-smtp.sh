# aiosmtpd (PyPI): a real SMTP server for the `fieldgate serve` test. Every
# message it accepts lands in a Maildir the test reads (FG_SMTP_MAILDIR).
# Sourced by test.sh: pip_install, wait_port and the .venv come from there.
if ! .venv/bin/python -c 'import aiosmtpd' 2>/dev/null; then
  pip_install 'aiosmtpd==1.4.6'
fi
# A free port: other runs on this machine may hold the usual ones.
FG_SMTP_PORT=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export FG_SMTP_PORT
export FG_SMTP_MAILDIR="$FG_STACK/smtp-maildir"
rm -rf "$FG_SMTP_MAILDIR" && mkdir -p "$FG_SMTP_MAILDIR"/{tmp,new,cur}
.venv/bin/python -m aiosmtpd -n -l "127.0.0.1:$FG_SMTP_PORT" \
  -c aiosmtpd.handlers.Mailbox "$FG_SMTP_MAILDIR" >"$FG_STACK/aiosmtpd.log" 2>&1 &
FG_PIDS+=($!)
wait_port aiosmtpd "$FG_SMTP_PORT" "$FG_STACK/aiosmtpd.log"

# The same, needing TLS and a login (STARTTLS on one port, TLS from the
# first byte on another), with a throwaway CA the tests trust through
# FIELDGATE_SMTP_CA_FILE. The certificates need `cryptography` (moto's
# dependency, pinned here too).
.venv/bin/python -c 'import cryptography' 2>/dev/null || pip_install 'cryptography==50.0.2'
free_port() { .venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
FG_SMTP_STARTTLS_PORT=$(free_port)
FG_SMTPS_PORT=$(free_port)
FG_SMTP_USER=fieldgate
FG_SMTP_PASSWORD="pw-$RANDOM$RANDOM"
FG_SMTP_TLS_MAILDIR="$FG_STACK/smtp-tls-maildir"
FG_SMTP_CA_FILE="$FG_STACK/smtp-tls/ca.pem"
export FG_SMTP_STARTTLS_PORT FG_SMTPS_PORT FG_SMTP_USER FG_SMTP_PASSWORD FG_SMTP_TLS_MAILDIR FG_SMTP_CA_FILE
rm -rf "$FG_SMTP_TLS_MAILDIR" "$FG_STACK/smtp-tls" && mkdir -p "$FG_SMTP_TLS_MAILDIR"/{tmp,new,cur}
.venv/bin/python infra/scripts/smtp/tls_server.py "$FG_STACK/smtp-tls" "$FG_SMTP_TLS_MAILDIR" \
  "$FG_SMTP_USER" "$FG_SMTP_PASSWORD" "$FG_SMTP_STARTTLS_PORT" "$FG_SMTPS_PORT" \
  >"$FG_STACK/aiosmtpd-tls.log" 2>&1 &
FG_PIDS+=($!)
wait_port "aiosmtpd (STARTTLS)" "$FG_SMTP_STARTTLS_PORT" "$FG_STACK/aiosmtpd-tls.log"
wait_port "aiosmtpd (smtps)" "$FG_SMTPS_PORT" "$FG_STACK/aiosmtpd-tls.log"
