"""Evidence units (ingest/units.py): sentences, list items and table rows with their context;
headings never quoted; prose split exactly as split_sentences splits it (no I/O)."""

from core.domain import Chunk, LineKind, LineMark, Page
from core.units import UnitKind
from ingest.chunking import chunk_pages
from ingest.sentences import split_sentences
from ingest.units import chunk_units, split_units

H, IT, R = LineKind.HEADING, LineKind.ITEM, LineKind.ROW
KEY = b"k" * 32  # chunk-id key
PROSE = [
    "The outage began on a Sunday\nnight. Root cause was a pump.\n\nNew para",
    "Dr. Smith arrived at 9 a.m. on 3 March. He left at noon; nobody knew why! Did he "
    "return? \"Yes,\" said the clerk. (The ledger agrees.) [1] Sources vary.",
    "The Normans (Norman: Nourmands; French: Normands; Latin: Normanni) were the people who "
    "in the 10th and 11th centuries gave their name to Normandy, a region in France. They "
    "were descended from Norse (\"Norman\" comes from \"Norseman\") raiders and pirates.",
    "Trioxygen (O\n3) is usually known as ozone. It forms when O\n2 combines with atomic "
    "oxygen made by the splitting of O\n2 by ultraviolet (UV) radiation.",
    "The committee met in\nJanuary to decide.\nIt agreed on the following;\nthe rest waited.",
]


def units(text: str, marks: tuple[LineMark, ...] = ()) -> list[tuple[str, str, str]]:
    return [(u.kind.value, text[u.start:u.end], u.context.describe())
            for u in split_units(text, marks)]


def test_prose_splits_exactly_as_split_sentences_with_no_context() -> None:
    for text in PROSE:
        got = split_units(text)
        assert [(u.start, u.end) for u in got] == split_sentences(text), text
        assert all(u.kind is UnitKind.SENTENCE and not u.context for u in got)


def test_a_heading_is_never_part_of_a_unit_and_names_the_section_below_it() -> None:
    # the failure this replaces: "## Pricing" over "The fee is:" was quoted "Pricing The fee is:"
    text = "Guide\nPricing\nThe fee is 12 euros.\nSupport\nCall us."
    marks = (LineMark(0, H, 1), LineMark(1, H, 2), LineMark(3, H, 2))
    assert units(text, marks) == [
        ("sentence", "The fee is 12 euros.", "Guide > Pricing"),
        ("sentence", "Call us.", "Guide > Support"),
    ]


def test_list_items_are_units_with_their_lead_in() -> None:
    # the failure this replaces: the lead-in "The fee is:" was quoted, the value sat below it
    text = "Pricing\nThe fee is:\nBasic: EUR 12/month\nPro: EUR 30/month\nyearly only\n1. Sign up"
    marks = (LineMark(0, H, 2), LineMark(2, IT), LineMark(3, IT), LineMark(4, IT, 1),
             LineMark(5, IT, 0, marker=3))
    assert units(text, marks) == [
        ("sentence", "The fee is:", "Pricing"),
        ("item", "Basic: EUR 12/month", "Pricing · The fee is:"),
        ("item", "Pro: EUR 30/month", "Pricing · The fee is:"),
        ("item", "yearly only", "Pricing · Pro: EUR 30/month"),  # nested: its parent item
        ("item", "Sign up", "Pricing · The fee is:"),  # the number "1. " is not quoted
    ]


def test_an_item_of_several_sentences_is_scored_sentence_by_sentence() -> None:
    text = "Rules:\nBadges are personal. Lost badges cost EUR 20.\nVisitors sign in."
    got = units(text, (LineMark(1, IT), LineMark(2, IT)))
    assert got == [("sentence", "Rules:", ""),
                   ("item", "Badges are personal.", "Rules:"),
                   ("item", "Lost badges cost EUR 20.", "Rules:"),
                   ("item", "Visitors sign in.", "Rules:")]


def test_table_rows_are_units_with_their_header() -> None:
    text = "Fees\n\nPlan: Basic | Fee: 12\nPlan: Pro | Fee: 30\n\nAnna | B-1"
    marks = (LineMark(0, H, 1), LineMark(2, R, header="Plan | Fee"),
             LineMark(3, R, header="Plan | Fee"), LineMark(5, R))
    assert units(text, marks) == [
        ("row", "Plan: Basic | Fee: 12", "Fees · Plan | Fee"),
        ("row", "Plan: Pro | Fee: 30", "Fees · Plan | Fee"),
        ("row", "Anna | B-1", "Fees"),
    ]


def test_plain_text_lists_bullets_lead_ins_and_wrapped_lines() -> None:
    text = ("Payment terms\n\nInvoices go out monthly. The fee is:\nBasic EUR 12 per month\n"
            "Pro EUR 30 per month\nConditions:\n• Invoices are due within thirty days of the\n"
            "invoice date.\n- Late fees apply.\n1. Pay by transfer.\n\nDone here.")
    assert units(text) == [
        ("sentence", "Invoices go out monthly.", "Payment terms"),
        ("sentence", "The fee is:", "Payment terms"),
        ("item", "Basic EUR 12 per month", "Payment terms · The fee is:"),
        ("item", "Pro EUR 30 per month", "Payment terms · The fee is:"),
        ("sentence", "Conditions:", "Payment terms"),  # a lead-in itself, not an item
        ("item", "Invoices are due within thirty days of the\ninvoice date.",
         "Payment terms · Conditions:"),
        ("item", "Late fees apply.", "Payment terms · Conditions:"),
        ("item", "Pay by transfer.", "Payment terms · Conditions:"),
        ("sentence", "Done here.", "Payment terms"),
    ]


def test_plain_text_guesses_only_clear_headings_and_items() -> None:
    # a figure after a wrapped line is no list; a long line after a lead-in is prose;
    # a lone short line with a figure or a closing period is no heading; nor is the last line
    text = ("Ozone (O\n3) is reactive.\n\nTotal due EUR 300\n\nThe terms are:\nthe buyer pays "
            "all costs of shipping and insurance for the goods in transit.\n\nEnd of file")
    assert [k for k, _q, _c in units(text)] == ["sentence"] * 5
    assert units(text)[2] == ("sentence", "The terms are:", "")


def test_a_chunk_that_opens_inside_a_list_keeps_its_section_and_lead_in() -> None:
    lines = ["Pricing", "The fee is:"] + [f"Plan {i}: EUR {i * 10} per month" for i in range(40)]
    text = "\n".join(lines)
    marks = (LineMark(0, H, 1),) + tuple(LineMark(i, IT) for i in range(2, len(lines)))
    pages = [Page(1, text, 0, marks)]
    chunks = chunk_pages("doc", pages, size=60, overlap=10, id_key=KEY)
    assert len(chunks) > 2
    per_chunk = chunk_units(pages, chunks)
    for chunk, us in zip(chunks, per_chunk, strict=True):
        for u in us:
            assert chunk.text[u.start:u.end] in text
            if u.kind is UnitKind.ITEM:
                assert u.context.section == ("Pricing",) and u.context.lead_in == "The fee is:"
    last = per_chunk[-1]
    assert last and all(u.kind is UnitKind.ITEM for u in last)


def test_chunk_units_of_prose_are_the_chunks_own_sentences() -> None:
    body = " ".join(f"Sentence {i} is about widget number {i}." for i in range(120))
    pages = [Page(1, body, 0), Page(2, "Second page text. It ends here.", len(body) + 2)]
    chunks = chunk_pages("doc", pages, size=50, overlap=10, id_key=KEY)
    for chunk, us in zip(chunks, chunk_units(pages, chunks), strict=True):
        assert [(u.start, u.end) for u in us] == split_sentences(chunk.text)
        assert all(u.kind is UnitKind.SENTENCE and not u.context for u in us)


def test_the_section_path_runs_on_across_pages_and_a_stray_chunk_still_splits() -> None:
    pages = [Page(1, "Terms\n\nIntro text.", 0, (LineMark(0, H, 1),)),
             Page(2, "More text. And more.", 20)]
    chunks = chunk_pages("doc", pages, 50, 10, KEY)
    got = chunk_units(pages, chunks)
    assert [u.context.section for u in got[-1]] == [("Terms",), ("Terms",)]
    stray = Chunk("x", "doc", 9, "Not on any page. Still split.", 7, 0, 29)
    assert [(u.start, u.end) for u in chunk_units(pages, [stray])[0]] == [(0, 16), (17, 29)]


def test_an_item_embeds_with_its_context_a_sentence_as_it_stands() -> None:
    text = "Pricing\nThe fee is:\nBasic: EUR 12"
    got = split_units(text, (LineMark(0, H, 1), LineMark(2, IT)))
    assert [u.embedding_text(text) for u in got] == [
        "The fee is:", "Pricing: The fee is: Basic: EUR 12"]
    row_text = "Plan: Basic | Fee: 12"
    row = split_units(row_text, (LineMark(0, R, header="Plan | Fee"),))[0]
    assert row.embedding_text(row_text) == "Plan: Basic | Fee: 12"


def test_headings_are_guessed_only_where_the_reader_saw_none() -> None:
    text = "Guide\n\nCall us\n\nWe answer within a day."
    assert units(text, (LineMark(0, H, 1),)) == [
        ("sentence", "Call us", "Guide"), ("sentence", "We answer within a day.", "Guide")]
    # plain text: both lone title-like lines are headings (one level: the later one wins)
    assert units(text) == [("sentence", "We answer within a day.", "Call us")]


def test_a_numbered_title_in_capitals_is_a_heading_not_a_list_item() -> None:
    # a plain-text procedure: "4. PADLOCK COLOURS" was an item, and was given as an answer
    text = ("3. LOCKING OUT\n\nFit a padlock to each device.\n\n4. PADLOCK COLOURS\n\n"
            "Locks are colour coded:\n- red: maintenance staff;\n- blue: the group lock box.\n")
    assert units(text) == [
        ("sentence", "Fit a padlock to each device.", "3. LOCKING OUT"),
        ("sentence", "Locks are colour coded:", "4. PADLOCK COLOURS"),
        ("item", "red: maintenance staff;", "4. PADLOCK COLOURS · Locks are colour coded:"),
        ("item", "blue: the group lock box.", "4. PADLOCK COLOURS · Locks are colour coded:"),
    ]
    # numbered steps in sentence case stay items
    steps = "Do this:\n\n1. Stop the machine.\n\n2. Fit a lock.\n"
    assert [kind for kind, _, _ in units(steps)] == ["sentence", "item", "item"]
