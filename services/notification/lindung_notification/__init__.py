"""Lindung notification service."""
