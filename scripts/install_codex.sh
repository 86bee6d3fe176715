#!/usr/bin/env bash
# Install the pinned Codex CLI into the repo-local, gitignored .tools/ directory.
#
#   bash scripts/install_codex.sh        # idempotent; quiet unless something fails
#
# Result: .tools/bin/codex (a symlink to the native binary shipped in the npm package, so
# signals reach Codex itself rather than the Node launcher). Tests find it there; point
# ASM_CODEX_CLI at it to use it elsewhere. Needs node/npm and the npm registry.
set -euo pipefail

CODEX_VERSION="${CODEX_VERSION:-0.169.0}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
LINK="$TOOLS/bin/codex"

if [[ -x "$LINK" ]] && "$LINK" --version 2>/dev/null | grep -q "codex-cli ${CODEX_VERSION}\$"; then
    exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
    echo "install_codex.sh: npm not found; install Node.js (e.g. apt-get install -y nodejs npm)" >&2
    exit 1
fi

mkdir -p "$TOOLS/bin"
npm install --prefix "$TOOLS" --no-audit --no-fund --no-save --loglevel=error \
    "@openai/codex@${CODEX_VERSION}" >/dev/null

native="$(find "$TOOLS/node_modules/@openai" -path '*/vendor/*/bin/codex' -type f 2>/dev/null | head -n 1 || true)"
if [[ -n "$native" ]]; then
    ln -sfn "$native" "$LINK"
else
    # No platform package with a native binary: fall back to the Node launcher.
    ln -sfn "$TOOLS/node_modules/@openai/codex/bin/codex.js" "$LINK"
fi
"$LINK" --version >/dev/null
