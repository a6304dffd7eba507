"""Lindung eligibility service."""
