"""Lindung billing service."""
