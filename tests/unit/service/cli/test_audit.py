"""``docqa audit verify`` and ``docqa audit tail``: exit codes and output."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from core.audit import canonical
from tests.unit.conftest import file_lines as _lines
from tests.unit.conftest import fill_audit as _fill
from tests.unit.conftest import write_lines as _write


def _edit_value(lines: list[bytes], i: int) -> None:
    e = json.loads(lines[i])
    e["tenant"] = "globex"
    lines[i] = canonical(e) + b"\n"


def test_cli_verify_exit_codes(tmp_path: Path) -> None:
    from service.cli import main

    path = tmp_path / "audit.log"
    _fill(path, 3)
    runner = CliRunner()
    ok = runner.invoke(main, ["audit", "verify", "--path", str(path)])
    assert ok.exit_code == 0 and "OK" in ok.output
    tailed = runner.invoke(main, ["audit", "tail", "--path", str(path), "-n", "2"])
    assert tailed.exit_code == 0 and [json.loads(x)["seq"] for x in tailed.output.split()] == [2, 3]
    lines = _lines(path)
    _edit_value(lines, 1)
    _write(path, lines)
    bad = runner.invoke(main, ["audit", "verify", "--path", str(path)])
    assert bad.exit_code == 1 and "TAMPERED" in bad.output and "line 2" in bad.output
    assert len(bad.output.strip().splitlines()) == 1
    missing = runner.invoke(main, ["audit", "verify", "--path", str(tmp_path / "nope.log")])
    assert missing.exit_code == 2
