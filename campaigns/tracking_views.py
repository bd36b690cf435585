"""The public URLs of sent emails: the open pixel, click redirects and unsubscribing.

Their tokens are signed (``campaigns.tracking``); a token that does not verify answers
404, and a click goes only to the link stored for that message. Unsubscribing takes
RFC 8058's one-click POST from mail clients, which send no cookies and no CSRF token;
a GET (a person following the link, or a mail scanner fetching it) only shows a page
that asks to confirm with a button.
"""

import base64

from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods

from campaigns import tracking

# A transparent 1x1 GIF.
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
ONE_CLICK = "List-Unsubscribe=One-Click"


@never_cache
@require_GET
def open_pixel(request, token):
    delivery_id = tracking.read_open_token(token)
    if delivery_id is None:
        raise Http404("no such message")
    tracking.record_open(delivery_id)
    return HttpResponse(PIXEL, content_type="image/gif")


@never_cache
@require_GET
def click(request, token):
    found = tracking.read_click_token(token)
    url = tracking.link_of(*found) if found else None
    if url is None:
        raise Http404("no such link")
    tracking.record_click(found[0])
    return HttpResponseRedirect(url)


@never_cache
@csrf_exempt
@require_http_methods(["GET", "POST"])
def unsubscribe(request, token):
    delivery_id = tracking.read_unsubscribe_token(token)
    if delivery_id is None or not tracking.delivery_exists(delivery_id):
        raise Http404("no such message")
    if request.method != "POST":
        return render(request, "campaigns/tracking/unsubscribe.html", {"token": token})
    delivery = tracking.unsubscribe(delivery_id)
    if delivery is None:
        raise Http404("no such message")
    if request.POST.get("List-Unsubscribe") == "One-Click":
        return HttpResponse("Unsubscribed.", content_type="text/plain")
    return render(request, "campaigns/tracking/unsubscribe.html",
                  {"token": token, "done": True})
