"""Ingestion service."""
