"""Provider adapters."""

__all__: tuple[str, ...] = ()
