"""Reports served by notify: the timeliness report, see `service.py`.

`service` (Faust, the table and the pages) is imported on first use, so the command line
can use the pure parts (`timeliness`, `state`) without loading Faust.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from services.notify.reports.service import TimelinessReports, add_reports

__all__ = ["TimelinessReports", "add_reports"]


def __getattr__(name: str) -> Any:  # noqa: ANN401 - whatever `service` holds
    if name in __all__:
        from services.notify.reports import service  # noqa: PLC0415 - imported on first use

        return getattr(service, name)
    raise AttributeError(name)
