"""djpool-core's optional integrations as users install them: the debug-toolbar panel's
template inside the wheel, the OpenTelemetry extra in the metadata."""

from __future__ import annotations

from tests.packaging.contract import CORE
from tests.packaging.tools import Wheel


def test_core_wheel_ships_the_panel_template_and_the_contrib_modules(wheels: dict[str, Wheel]) -> None:
    payload = wheels[CORE].payload
    assert "djpool/core/templates/djpool/debug_toolbar/pool_panel.html" in payload
    assert {"djpool/core/contrib/opentelemetry.py", "djpool/core/contrib/debug_toolbar.py"} <= payload


def test_core_offers_the_opentelemetry_extra(wheels: dict[str, Wheel]) -> None:
    core = wheels[CORE]
    assert "opentelemetry" in core.field("Provides-Extra")
    assert "opentelemetry-api" in core.extra("opentelemetry")
    # Optional: a plain install does not pull OpenTelemetry in.
    assert "opentelemetry-api" not in core.unconditional()
