#!/usr/bin/env bash
# Installs the provider CLIs the integration tests drive, into the repo-local .tools/ dir.
# The Claude Code CLI ships inside the claude-agent-sdk wheel (installed by pip). The Codex
# CLI comes from npm; without npm, outside CI, its real-CLI tests are skipped instead.
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v npm >/dev/null 2>&1 || [ "${CI:-}" = "true" ]; then
  bash scripts/install_codex.sh
else
  echo "install_clis.sh: npm not found; the real Codex CLI tests will be skipped" >&2
fi
