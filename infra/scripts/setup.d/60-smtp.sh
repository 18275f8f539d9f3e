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
