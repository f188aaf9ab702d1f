"""The client's 429 handling: wait for Retry-After and send again, within a budget."""

from __future__ import annotations

import httpx
import pytest

from service.client import DocqaAPIError, DocqaClient


def _client(responses: list[int], budget: float, seen: list[bytes]) -> DocqaClient:
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.read())
        code = queue.pop(0) if queue else 200
        if code == 429:
            return httpx.Response(429, headers={"Retry-After": "0.05"},
                                  json={"detail": "slow down"})
        return httpx.Response(202, json={"id": "d1", "status": "queued"})

    return DocqaClient("http://docqa.test", "k", transport=httpx.MockTransport(handler),
                       wait_on_429_s=budget)


def test_a_refused_upload_is_sent_again_with_the_same_body() -> None:
    seen: list[bytes] = []
    out = _client([429, 429], budget=5.0, seen=seen).upload_bytes("a.txt", b"hello")
    assert out["id"] == "d1" and len(seen) == 3
    assert seen[0] == seen[2] and b"hello" in seen[2]


def test_the_429_reaches_the_caller_when_the_budget_is_spent() -> None:
    seen: list[bytes] = []
    with pytest.raises(DocqaAPIError) as err:
        _client([429] * 50, budget=0.12, seen=seen).upload_bytes("a.txt", b"x")
    assert err.value.status == 429 and 2 <= len(seen) < 50
