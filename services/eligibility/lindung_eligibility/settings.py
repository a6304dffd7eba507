"""Eligibility's settings: the shared ones are all it needs for now."""

from lindung_runtime.settings import LindungSettings


class EligibilitySettings(LindungSettings):
    pass
