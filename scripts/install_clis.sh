#!/usr/bin/env bash
# Installs the provider CLIs the integration tests drive, into the repo-local .tools/ dir.
# The Claude Code CLI ships inside the claude-agent-sdk wheel (installed by pip).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -f scripts/install_codex.sh ]; then
  bash scripts/install_codex.sh
fi
