"""Business documents on the real stack: a list item, an HTML table row and a DOCX table row,
each the answer to a question that names one of several similar rows, cited to that row; and
a near miss (a quarter no document states) answered not_found."""

from __future__ import annotations

from typing import Any

import pytest

from bench.docbuild import build_docx
from service.client import DocqaClient
from tests.integration.conftest import Stack

pytestmark = pytest.mark.integration

FILES: dict[str, bytes] = {
    "parking-policy.md": (
        b"# Parking policy\n\n"
        b"## Monthly permits\n\n"
        b"Monthly parking permits cost:\n\n"
        b"- Garage North: 85 kronor\n"
        b"- Garage South: 120 kronor\n"
        b"- Open lot by the canteen: 40 kronor\n\n"
        b"Permits are renewed on the first working day of each month.\n"
    ),
    "freight-rates.html": (
        b"<html><body><h1>Freight rates 2025</h1><p>Rates per pallet, by destination.</p>"
        b"<table><tr><th>Destination</th><th>Rate per pallet</th><th>Transit time</th></tr>"
        b"<tr><td>Oslo</td><td>SEK 1,150</td><td>2 days</td></tr>"
        b"<tr><td>Helsinki</td><td>SEK 1,480</td><td>3 days</td></tr>"
        b"<tr><td>Copenhagen</td><td>SEK 890</td><td>1 day</td></tr>"
        b"</table></body></html>"
    ),
    "quarterly-sales.docx": build_docx(
        "# Quarterly sales 2024\n\n"
        "Net sales of the Nordic region by quarter.\n\n"
        "| Quarter | Net sales | Orders |\n"
        "|---|---|---|\n"
        "| Q1 2024 | SEK 41.2 million | 310 |\n"
        "| Q2 2024 | SEK 44.9 million | 342 |\n"
        "| Q3 2024 | SEK 39.7 million | 298 |\n\n"
        "Figures for the fourth quarter follow in the annual report.\n",
        "Quarterly sales 2024"),
}

# question, file, the value, the row's words that set it apart from its neighbours
ANSWERABLE = [
    ("How much does a monthly permit for Garage South cost?", "parking-policy.md",
     "120 kronor", "Garage South"),
    ("What is the rate per pallet to Helsinki?", "freight-rates.html", "SEK 1,480", "Helsinki"),
    ("What were net sales in the second quarter of 2024?", "quarterly-sales.docx",
     "SEK 44.9 million", "Q2 2024"),
]
NEAR_MISS = "What were net sales in the fourth quarter of 2024?"


@pytest.fixture(scope="module")
def business(stack: Stack) -> dict[str, Any]:
    with stack.client("acme") as c:
        ids = {c.upload_bytes(name, data)["id"]: name for name, data in FILES.items()}
        final = c.wait_ready(list(ids), timeout=300)
    assert {d["status"] for d in final.values()} == {"ready"}, final
    return ids


@pytest.mark.parametrize(("question", "filename", "value", "row"), ANSWERABLE)
def test_a_structured_unit_answers_with_its_value_cited_to_its_row(
        acme: DocqaClient, business: dict[str, Any], question: str, filename: str, value: str,
        row: str) -> None:
    res = acme.ask(question, document_ids=list(business))
    assert res["status"] == "answered", res
    assert value in res["answer"], res
    first = res["citations"][0]
    assert first["filename"] == filename, res
    # the quote is the one row or item that holds the value, not the table or the list
    assert value in first["quote"] and row in first["quote"], first
    assert len(first["quote"]) < 120, first


def test_a_quarter_no_document_states_is_not_found(
        acme: DocqaClient, business: dict[str, Any]) -> None:
    res = acme.ask(NEAR_MISS, document_ids=list(business))
    assert res["status"] == "not_found", res
    assert res["citations"] == []
