"""Test helpers shipped with the library: the store conformance suite and fakes."""

from .conformance import (
    CONFORMANCE_CHECKS,
    ConformanceFailure,
    ConformanceReport,
    run_store_conformance,
)
from .scripted import Script, ScriptedAdapter, ScriptedCall, Step, text_script

__all__ = (
    "CONFORMANCE_CHECKS",
    "ConformanceFailure",
    "ConformanceReport",
    "Script",
    "ScriptedAdapter",
    "ScriptedCall",
    "Step",
    "run_store_conformance",
    "text_script",
)
