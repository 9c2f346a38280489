"""Identity service."""
