"""Reports served by notify: the timeliness report (issue 13), see `service.py`."""

from services.notify.reports.service import TimelinessReports, add_reports

__all__ = ["TimelinessReports", "add_reports"]
