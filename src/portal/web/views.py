"""Pages. For now the landing page and a health check; the browser issue adds the rest."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from portal.accounts.principal import Principal
from portal.partners.selectors import sub_account_list


@login_required
def home(request: HttpRequest) -> HttpResponse:
    principal = Principal.for_user(request.user)  # type: ignore[arg-type]
    sub_accounts = sub_account_list(principal=principal)[:200]
    return render(request, "web/home.html", {"principal": principal, "sub_accounts": sub_accounts})


def healthz(request: HttpRequest) -> JsonResponse:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})
