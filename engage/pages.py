"""What the browser pages of every app share: HTMX-aware redirects, one job per confirmed
dialog, counts that stop at a cap, and keyset pages."""

import uuid

from django.shortcuts import redirect
from django.utils.cache import patch_vary_headers
from django.utils.http import url_has_allowed_host_and_scheme
from django_htmx.http import HttpResponseClientRedirect

# Lists count their rows up to here and then say "more than": no COUNT(*) over a large table.
COUNT_CAP = 10_000


def htmx_redirect(request, url: str):
    """Redirect, the HTMX way (the browser goes to ``url``) when HTMX asked."""
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


def new_submit_token() -> str:
    """Return a fresh token for a confirmation dialog's form (see ``started_job``)."""
    return uuid.uuid4().hex


def started_job(request, session_key: str) -> int | None:
    """Return the job that the posted token started already, if it did (a double submit).

    A dialog carries a token; the job it starts is remembered under the token in the
    session (``session_key`` names the kind of job), so a second submit of the same
    dialog finds that job instead of starting another.
    """
    token = request.POST.get("token", "")
    return request.session.get(session_key, {}).get(token) if token else None


def remember_job(request, session_key: str, job_id: int) -> None:
    """Remember that the posted token started ``job_id`` (see ``started_job``)."""
    token = request.POST.get("token", "")
    if token:
        request.session[session_key] = {**request.session.get(session_key, {}), token: job_id}


def capped_count(rows, cap: int | None = None) -> tuple[int, bool]:
    """Count ``rows`` up to ``cap`` (COUNT_CAP); tell whether there are more.

    No full COUNT(*): the database stops counting at the cap.
    """
    cap = COUNT_CAP if cap is None else cap
    count = rows.order_by()[:cap + 1].count()
    return min(count, cap), count > cap


def keyset_page(rows, *, size: int, before: int | None = None, key: str = "pk"):
    """Return one page of ``rows``, newest first by ``key``, and the key of the next page.

    The page holds the rows whose ``key`` is below ``before`` (all when None); the next
    page starts below the last row's key, or is None when this one is the last. ``key``
    must equal the primary key (it may be a column holding the same value, in an index's
    order).
    """
    page = rows.order_by(f"-{key}")
    if before:
        page = page.filter(pk__lt=before)
    found = list(page[:size + 1])
    return found[:size], (found[size - 1].pk if len(found) > size else None)


def swaps_a_partial(request) -> bool:
    """Tell whether to answer with a partial: an HTMX swap, not a boost or a history restore."""
    htmx = request.htmx
    return bool(htmx) and not htmx.boosted and not htmx.history_restore_request


def varies_with_htmx(response):
    """Keep a URL's partial and full page apart in every cache (its view is never_cache)."""
    patch_vary_headers(response, ["HX-Request"])
    return response


def safe_back(url: str | None) -> str | None:
    """Return ``url`` if it is a path on this site, to link back to; else None."""
    if url and url.startswith("/") and url_has_allowed_host_and_scheme(url, allowed_hosts=None):
        return url
    return None
