"""Alembic's environment and the desk's migrations (services.desk.migrate runs them)."""
