"""The staff pages: server-rendered HTML in Bahasa Indonesia, under `/ui/`, for the labour
office, the village offices and the BPJS Ketenagakerjaan branch.

They read registration's own projections (the funnel, the timeline, the term lines) and change
things only through the routes the API already has (imports, renewals). No build step and no
CDN: templates, one stylesheet and one small script are files of this package.
"""

from __future__ import annotations

from lindung_registration.web.pages import install_web

__all__ = ["install_web"]
