"""Evaluation protocols: the LFW View-2 arithmetic on known numbers, a small real run through the CLI,
and (slow) the full shared folds with the accuracy the engine issue asks for."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from facevault.cli import app
from facevault.errors import InputError
from facevault.eval.lfw import PairsFile, best_threshold, evaluate_scores, read_pairs, tar_at_far

from .conftest import data_path

runner = CliRunner()


def test_read_pairs_header_and_rows(tmp_path: Path) -> None:
    p = tmp_path / "pairs.txt"
    p.write_text("2\t1\nA\t1\t2\nA\t1\tB\t1\nC\t3\t4\nC\t1\tD\t2\n")
    pf = read_pairs(p)
    assert (pf.folds, pf.per_fold) == (2, 1)
    assert pf.pairs[1] == ("A", 1, "B", 1)
    assert pf.same.tolist() == [True, False, True, False]
    assert pf.fold_of.tolist() == [0, 0, 1, 1]
    p.write_text("2\t2\nA\t1\t2\n")
    with pytest.raises(InputError, match="promises 8 pairs"):
        read_pairs(p)


def test_threshold_is_chosen_on_the_other_folds() -> None:
    # fold 0 alone would pick a threshold near 0.5; folds 1-2 say 0.8, so fold 0 is scored at 0.8.
    scores = np.array([0.6, 0.4, 0.9, 0.7, 0.95, 0.75])
    same = np.array([True, False, True, False, True, False])
    pf = PairsFile(3, 1, [("a", 1, "a", 2)] * 6, same, np.array([0, 0, 1, 1, 2, 2]))
    res = evaluate_scores(scores, pf)
    assert res["fold_thresholds"][0] == pytest.approx(0.825)  # midway between 0.75 and 0.9
    assert res["fold_accuracies"][0] == 0.5  # 0.6 < 0.825: the genuine pair of fold 0 is missed
    assert res["accuracy"] == pytest.approx(np.mean(res["fold_accuracies"]), abs=1e-4)


def test_best_threshold_and_tar() -> None:
    scores = np.array([0.1, 0.2, 0.3, 0.8, 0.9])
    same = np.array([False, False, False, True, True])
    assert 0.3 < best_threshold(scores, same) < 0.8
    tar, thr = tar_at_far(scores, same, far=0.0)
    assert tar == 1.0 and thr > 0.3


def test_small_real_lfw_run_through_the_cli(tmp_path: Path) -> None:
    images = data_path("lfw", "lfw-deepfunneled")
    rows = [
        "Colin_Powell\t1\t2",
        "Tony_Blair\t1\t2",
        "Colin_Powell\t3\tTony_Blair\t3",
        "Hugo_Chavez\t1\tTony_Blair\t4",
        "Hugo_Chavez\t1\t2",
        "Jacques_Chirac\t1\t2",
        "Hugo_Chavez\t3\tJacques_Chirac\t3",
        "Colin_Powell\t4\tJacques_Chirac\t4",
    ]
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("2\t2\n" + "\n".join(rows[:2] + rows[2:4] + rows[4:6] + rows[6:]) + "\n")
    plot = tmp_path / "roc.png"
    result = runner.invoke(
        app,
        [
            "eval",
            "lfw",
            "--pairs",
            str(pairs),
            "--images",
            str(images),
            "--json",
            "--plot",
            str(plot),
            "--workers",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    res = json.loads(result.stdout)
    assert res["pairs"] == 8 and res["images"] == 15  # Hugo_Chavez_0001 is in two pairs
    assert res["accuracy"] == 1.0
    assert res["no_face_detected"] == 0 and "centre" in res["no_face_handling"]
    assert plot.stat().st_size > 1000


def test_missing_pairs_file_is_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["eval", "lfw", "--pairs", str(tmp_path / "x.txt"), "--images", str(tmp_path), "--json"]
    )
    assert result.exit_code == 3
    assert json.loads(result.stdout)["error"]["code"] == "file_not_found"


@pytest.mark.slow
def test_full_lfw_view2_accuracy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Acceptance of the engine issue: >= 0.985 on the shared folds (about a minute on 2 cores). The
    images are looked at as enrollment looks at them (HOG first on portraits): the CNN's full scan of
    3,811 images would cost CI ten minutes; its figure is in docs/BENCHMARKS.md."""
    monkeypatch.setenv("FACEVAULT_EVAL_DETECT", "portrait")
    lfw = data_path("lfw")
    result = runner.invoke(
        app,
        [
            "eval",
            "lfw",
            "--pairs",
            str(lfw / "pairs.txt"),
            "--images",
            str(lfw / "lfw-deepfunneled"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    res = json.loads(result.stdout)
    assert res["pairs"] == 3000
    assert res["accuracy"] >= 0.985, res
    assert res["no_face_detected"] / res["images"] <= 0.02


@pytest.mark.slow
def test_open_set_identification_on_lfw(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACEVAULT_EVAL_DETECT", "portrait")  # as above
    images = data_path("lfw", "lfw-deepfunneled")
    result = runner.invoke(app, ["eval", "identify", "--images", str(images), "--json"])
    assert result.exit_code == 0, result.output
    res = json.loads(result.stdout)
    assert res["gallery_size"] > 500 and res["non_mated_probes"] > 1000
    assert res["rank1_hit_rate"] >= 0.93
    assert res["fpir_at_default_threshold"] <= 0.02  # the default threshold keeps its FPIR promise
    assert 0 < res["fnir_at_fpir_0.01"] < 0.6
