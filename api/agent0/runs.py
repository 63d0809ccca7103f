"""Where Agent0 learns a run's state: the API's ``GET /v1/runs/{run_id}`` (the API reads ``orchestration.runs.v1``
from the warehouse), asked with the caller's own bearer token, so Agent0 keeps no copy of runs and holds no
credential of its own for it. A trader may read runs (trader ⊇ viewer), so the caller's token suffices."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from pydantic import ValidationError

from api.models import RunDetail
from ibstream.config import Settings
from ibstream.exceptions import IbstreamError

#: (run_id, the caller's bearer token) → the run as orchestration recorded it, or None when there is none.
RunLookup = Callable[[str, str], RunDetail | None]


class RunLookupError(IbstreamError):
    """The API could not say what the run's state is (down, refused the token, answered nonsense)."""


def api_run_lookup(settings: Settings, timeout: float = 5.0, transport: httpx.BaseTransport | None = None) -> RunLookup:
    """Ask the API at ``IBSTREAM_AGENT0_API_URL``; 404 is "no such run", anything but 200 is a RunLookupError."""
    client = httpx.Client(base_url=settings.agent0.api_url, timeout=timeout, transport=transport)

    def lookup(run_id: str, token: str) -> RunDetail | None:
        try:
            response = client.get(f"/v1/runs/{run_id}", headers={"Authorization": f"Bearer {token}"})
        except httpx.HTTPError as error:
            raise RunLookupError(f"the API is unreachable ({type(error).__name__})") from None
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise RunLookupError(f"the API answered {response.status_code} for run {run_id}")
        try:
            return RunDetail.model_validate_json(response.content)
        except ValidationError:
            raise RunLookupError(f"the API's answer for run {run_id} is not a run") from None

    return lookup
