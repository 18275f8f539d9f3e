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
# axe-core (npm) checks the pages for WCAG 2.1 A/AA problems in the browser tests.
AXE_VERSION=4.14.1
if [[ ! -f "$FG_STACK/axe/node_modules/axe-core/axe.min.js" ]] ||
   ! grep -q "\"version\": \"$AXE_VERSION\"" "$FG_STACK/axe/node_modules/axe-core/package.json"; then
  npm install --prefix "$FG_STACK/axe" --no-audit --no-fund --silent "axe-core@$AXE_VERSION" >"$FG_STACK/axe-install.log" 2>&1 ||
    { tail -30 "$FG_STACK/axe-install.log" >&2; exit 1; }
fi
export AXE_CORE_JS="$FG_STACK/axe/node_modules/axe-core/axe.min.js"
