"""Benchmarks of agent-session-manager (run with ``python -m benchmarks.run``)."""
