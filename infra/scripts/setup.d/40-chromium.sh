# Headless Chromium + chromedriver (Debian packages) for tests/browser.rs.
# Installs once, starts chromedriver on localhost, exports CHROMEDRIVER_URL.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver \
    >"$FG_STACK/chromium-install.log" 2>&1 || { tail -30 "$FG_STACK/chromium-install.log" >&2; exit 1; }
fi
CHROMEDRIVER_PORT=${CHROMEDRIVER_PORT:-9515}
# Without --allowed-ips chromedriver listens on the loopback only.
chromedriver --port="$CHROMEDRIVER_PORT" >"$FG_STACK/chromedriver.log" 2>&1 &
FG_PIDS+=($!)
wait_port chromedriver "$CHROMEDRIVER_PORT" "$FG_STACK/chromedriver.log"
export CHROMEDRIVER_URL="http://127.0.0.1:$CHROMEDRIVER_PORT"
export CHROMIUM_BINARY=${CHROMIUM_BINARY:-/usr/bin/chromium}
