"""The desk's schema revisions, oldest first."""
