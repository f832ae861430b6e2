"""Docs that cannot drift (issue 20): every file path, make target, `python -m` module, CLI command and
flag that README.md and docs/ name exists in the checkout."""

from __future__ import annotations

import pytest

from tests.docs.doc_refs import documents, problems, tracked


@pytest.mark.parametrize("doc", documents(), ids=lambda p: p.name)
def test_the_docs_name_only_what_exists(doc: object) -> None:
    from pathlib import Path

    assert isinstance(doc, Path)
    assert [str(p) for p in problems(doc.name, doc.read_text(), tracked())] == []


def test_a_doc_naming_what_does_not_exist_fails_once_per_name() -> None:
    synthetic = "\n".join([
        "The rollup lives in `chalicelib/services/rollups.py` and `sendr.py`; run `make tset`.",
        "```", "python -m chalicelib.cli cutover prefligth --stage dev", "edge-billing status --stgae dev",
        "python -m cellkit run --forever", "python -m sim.nowhere up", "```",
    ])
    found = {(p.kind, p.name) for p in problems("synthetic.md", synthetic)}
    assert found == {("path", "chalicelib/services/rollups.py"), ("path", "sendr.py"), ("make target", "tset"),
                     ("CLI command or flag", "cutover prefligth"), ("CLI command or flag", "status --stgae"),
                     ("CLI command or flag", "run --forever"), ("module", "sim.nowhere")}


def test_what_exists_passes() -> None:
    real = "\n".join([
        "`chalicelib/services/rollup.py`, `sender.py`, `docs/`, `make test`, `STAGE=prod make package`",
        "```", "python -m chalicelib.cli cutover preflight --stage dev [--json]", "edge-billing status --stage dev",
        "python -m cellkit run / status [--push] / stop", "python -m sim.stack env", "```",
        "Routes and keys are not paths: `/ingest`, `pro/free`, `late/signal`, `out/cutover-report.json`.",
    ])
    assert problems("real.md", real) == []
