"""Provider adapters."""

from .shell import ShellAdapter

__all__: tuple[str, ...] = ("ShellAdapter",)
