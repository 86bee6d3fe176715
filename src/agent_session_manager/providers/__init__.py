"""Provider adapters: Claude Code, Codex, Amp and a local shell, over one session model."""

from .amp import AmpAdapter
from .claude import ClaudeAdapter
from .codex import CodexAdapter
from .shell import ShellAdapter

__all__: tuple[str, ...] = ("AmpAdapter", "ClaudeAdapter", "CodexAdapter", "ShellAdapter")
