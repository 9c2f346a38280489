"""Validation service."""
