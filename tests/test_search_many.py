"""Many probes in one search (``facevault search COLL P1 P2 ...`` and ``--manifest``): one search and one
audit entry per probe, JSON Lines, a failed probe reported and the run going on, exit code 10."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from facevault.cli import EXIT_PARTIAL, app
from facevault.errors import FaceVaultError, NotFoundError
from facevault.results import SearchResult
from facevault.service.search_many import read_manifest

from .conftest import lfw

runner = CliRunner()


def fv(*args: str | Path, code: int = 0) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == code, (result.exit_code, result.output)
    return result.stdout


@pytest.fixture
def gallery(tmp_path: Path) -> None:
    fv("init")
    fv("collection", "create", "g")
    for person in ("Tony_Blair", "Hugo_Chavez"):
        name = person.replace("_", " ")
        fv("subject", "add", "g", "--name", name, "--purpose", "testing", "--consent-text", "signed (test)")
        fv("enroll", "g", name, lfw(person, 1), lfw(person, 2))


def _searches() -> list[dict]:  # type: ignore[type-arg]
    return [
        e for e in json.loads(fv("audit", "list", "--limit", "1000", "--json")) if e["action"] == "search"
    ]


def test_several_probes_give_json_lines_and_a_failed_probe_does_not_stop_the_run(
    gallery: None, tmp_path: Path
) -> None:
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 this is not a JPEG")
    probes = [lfw("Tony_Blair", 3), bad, lfw("Hugo_Chavez", 3), lfw("Colin_Powell", 1)]
    before = len(_searches())
    out = fv("search", "g", *probes, "--purpose", "batch check", "--json", code=EXIT_PARTIAL)
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["probe"] for line in lines] == [str(p) for p in probes]
    tony, broken, hugo, colin = lines
    assert broken["error"]["code"] == "unreadable_image"
    assert broken["error"]["message"] and "faces" not in broken
    assert tony["faces"][0]["candidates"][0]["name"] == "Tony Blair" and tony["matched"] is True
    assert hugo["faces"][0]["candidates"][0]["name"] == "Hugo Chavez"
    assert colin["matched"] is False
    # the single search's JSON, plus the probe path
    assert set(tony) - {"probe"} == set(
        json.loads(fv("search", "g", lfw("Tony_Blair", 3), "--purpose", "p", "--json"))
    )

    searches = _searches()
    assert len(searches) == before + 4 + 1  # one per probe, the failed one included (+ the single search)
    batch = [e for e in searches if e["purpose"] == "batch check"]
    assert sorted(e["details"]["outcome"] for e in batch) == ["error", "ok", "ok", "ok"]
    assert {e["seq"] for e in batch} == {tony["audit_seq"], hugo["audit_seq"], colin["audit_seq"]} | {
        e["seq"] for e in batch if e["details"]["outcome"] == "error"
    }


def test_manifest_with_relative_paths_and_text_blocks(gallery: None, tmp_path: Path) -> None:
    folder = tmp_path / "cases" / "probes"
    folder.mkdir(parents=True)
    shutil.copy(lfw("Tony_Blair", 4), folder / "t.jpg")
    shutil.copy(lfw("Hugo_Chavez", 4), folder / "h.jpg")
    manifest = tmp_path / "cases" / "probes.txt"
    manifest.write_text("# probes of case 7\nprobes/t.jpg\n\n  probes/h.jpg  \n")
    assert read_manifest(manifest) == [str(folder / "t.jpg"), str(folder / "h.jpg")]

    out = fv("search", "g", "--manifest", manifest, "--purpose", "case 7")
    blocks = [b for b in out.split("\n\n") if b.strip()]
    assert len(blocks) == 2
    assert blocks[0].startswith(f"== {folder / 't.jpg'}") and "Tony Blair" in blocks[0]
    assert blocks[1].startswith(f"== {folder / 'h.jpg'}") and "Hugo Chavez" in blocks[1]
    lines = fv("search", "g", "--manifest", manifest, "--purpose", "case 7", "--json").splitlines()
    assert [json.loads(line)["faces"][0]["candidates"][0]["name"] for line in lines] == [
        "Tony Blair",
        "Hugo Chavez",
    ]
    assert len([e for e in _searches() if e["purpose"] == "case 7"]) == 4

    # a manifest naming a missing file: that probe fails, the run goes on
    manifest.write_text("probes/t.jpg\nprobes/gone.jpg\n")
    lines = fv(
        "search", "g", "--manifest", manifest, "--purpose", "p", "--json", code=EXIT_PARTIAL
    ).splitlines()
    assert [json.loads(line).get("error", {}).get("code") for line in lines] == [None, "file_not_found"]
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n\n")
    assert runner.invoke(app, ["search", "g", "--manifest", str(empty), "--purpose", "p"]).exit_code == 3
    missing = runner.invoke(app, ["search", "g", "--manifest", str(tmp_path / "no.txt"), "--purpose", "p"])
    assert missing.exit_code == 3


def test_one_probe_is_the_single_search_and_request_errors_stop_before_any_probe(
    gallery: None, tmp_path: Path
) -> None:
    single = fv("search", "g", lfw("Tony_Blair", 3), "--purpose", "p", "--json")
    assert single.startswith("{\n") and "probe" not in json.loads(single)  # indented JSON, as always
    both = [lfw("Tony_Blair", 3), lfw("Hugo_Chavez", 3)]
    before = len(_searches())
    assert runner.invoke(app, ["search", "nope", *map(str, both), "--purpose", "p"]).exit_code == 4
    assert runner.invoke(app, ["search", "g", *map(str, both)]).exit_code == 2  # --purpose required
    too_many = runner.invoke(
        app, ["search", "g", *map(str, both), "--purpose", "p", "--top", "5000", "--json"]
    )
    assert too_many.exit_code == 3 and json.loads(too_many.stdout)["error"]["code"] == "top_too_large"
    assert len(_searches()) == before + 1  # the refused request, once (not once per probe)
    assert runner.invoke(app, ["search", "g", "--purpose", "p"]).exit_code == 2  # no probe
    manifest = tmp_path / "m.txt"
    manifest.write_text(str(both[0]))
    mixed = runner.invoke(app, ["search", "g", str(both[1]), "--manifest", str(manifest), "--purpose", "p"])
    assert mixed.exit_code == 2
    assert fv("search", "g", *both, "--purpose", "p").count("\n== ") == 1  # two blocks


def test_service_generator_yields_results_and_errors_in_order(vault, tmp_path: Path) -> None:
    vault.create_collection("g")
    vault.add_subject("g", "Tony Blair", purpose="testing", consent_text="signed (test)")
    vault.enroll("g", "Tony Blair", [str(lfw("Tony_Blair", 1))])
    probes = [str(lfw("Tony_Blair", 2)), str(tmp_path / "none.jpg")]
    out = list(vault.search_many("g", probes, purpose="p", top_k=2))
    assert [p for p, _ in out] == probes
    assert isinstance(out[0][1], SearchResult) and out[0][1].matched and out[0][1].top_k == 2
    assert isinstance(out[1][1], FaceVaultError) and out[1][1].code == "file_not_found"
    with pytest.raises(NotFoundError):
        next(vault.search_many("nope", probes, purpose="p"))


@pytest.mark.slow
def test_worker_processes_give_the_in_process_answers_in_order_with_one_audit_entry_each(
    vault, tmp_path: Path
) -> None:
    """Probes analysed over two worker processes: the same results (probe order, candidates, scores and
    errors) as analysed here, and one audit entry per probe, the failed ones included."""
    vault.create_collection("g")
    for person in ("Tony_Blair", "Hugo_Chavez", "Colin_Powell"):
        vault.add_subject("g", person, purpose="testing", consent_text="signed (test)")
        vault.enroll("g", person, [str(lfw(person, 1))])
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not a JPEG")
    probes = [str(lfw(p, n)) for p in ("Tony_Blair", "Hugo_Chavez", "Colin_Powell") for n in (2, 3, 4)]
    probes[4:4] = [str(bad), str(tmp_path / "missing.jpg")]

    def run(workers: int) -> list[tuple[str, object]]:
        out = []
        for probe, res in vault.search_many("g", probes, purpose="p", workers=workers):
            if isinstance(res, FaceVaultError):
                out.append((probe, res.code))
            else:
                out.append(
                    (probe, [[(c.name, round(c.similarity, 5)) for c in f.candidates] for f in res.faces])
                )
        return out

    def searches() -> int:
        return sum(e.action == "search" for e in vault.audit_entries(limit=10_000))

    before = searches()
    here = run(1)
    assert searches() == before + len(probes)
    there = run(2)
    assert searches() == before + 2 * len(probes)
    assert there == here
    assert [r for p, r in here if p in (str(bad), str(tmp_path / "missing.jpg"))] == [
        "unreadable_image",
        "file_not_found",
    ]
    lfw_results = [(Path(p).parent.name, r) for p, r in here if isinstance(r, list)]
    assert len(lfw_results) == 9
    assert sum(bool(r[0]) and r[0][0][0] == person for person, r in lfw_results) >= 7
