"""CLI."""


def main() -> None:
    """Entry point."""
