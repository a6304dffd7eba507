"""How a handler tells the runtime what kind of failure it hit."""


class PermanentError(Exception):
    """Retrying cannot help (bad input, unknown reference): dead-letter it at once."""

    code = "permanent_error"


class NotReadyYet(Exception):
    """Something this event depends on has not arrived yet: retry with backoff, then dead-letter."""

    code = "not_ready"
