"""Billing's settings: the shared ones are all it needs for now."""

from lindung_runtime.settings import LindungSettings


class BillingSettings(LindungSettings):
    pass
