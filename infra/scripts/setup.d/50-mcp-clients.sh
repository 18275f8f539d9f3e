# The official MCP client SDKs (Python `mcp` from PyPI, TypeScript
# `@modelcontextprotocol/sdk` from npm): clients nobody here wrote drive the
# MCP endpoint (tests/mcp_clients.rs runs tests/thirdparty/mcp_*.{py,mjs}).
# Sourced by test.sh: pip_install, FG_STACK and the .venv come from there.
if ! .venv/bin/python -c 'import mcp.client.streamable_http' 2>/dev/null; then
  pip_install 'mcp>=1.12,<2'
fi
.venv/bin/python -c 'import mcp.client.streamable_http' \
  || { echo "the Python MCP SDK did not install into .venv" >&2; exit 1; }

command -v node >/dev/null || { echo "node is required for the TypeScript MCP SDK test" >&2; exit 1; }
FG_MCP_NODE="$FG_STACK/mcp-node"
if [[ ! -f "$FG_MCP_NODE/node_modules/@modelcontextprotocol/sdk/package.json" ]]; then
  mkdir -p "$FG_MCP_NODE"
  [[ -f "$FG_MCP_NODE/package.json" ]] || echo '{"name":"fieldgate-mcp-clients","private":true,"type":"module"}' >"$FG_MCP_NODE/package.json"
  npm install --prefix "$FG_MCP_NODE" --no-audit --no-fund --silent '@modelcontextprotocol/sdk@^1.17'
fi
node -e "require.resolve('@modelcontextprotocol/sdk/package.json', {paths: ['$FG_MCP_NODE']})" \
  || { echo "the TypeScript MCP SDK did not install into $FG_MCP_NODE" >&2; exit 1; }
export FG_MCP_NODE_MODULES="$FG_MCP_NODE/node_modules"
