"""``facevault eval ...``: evaluation protocols on labelled face datasets."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from .output import JsonOpt, emit, run

eval_app = typer.Typer(help="Evaluation protocols on labelled face datasets.", no_args_is_help=True)


@eval_app.command("lfw")
def eval_lfw(
    pairs: Annotated[Path, typer.Option("--pairs", help="LFW pairs.txt (View 2).")],
    images: Annotated[Path, typer.Option("--images", help="LFW image folder (one folder per person).")],
    model: Annotated[str | None, typer.Option(help="Embedding model.")] = None,
    workers: Annotated[int | None, typer.Option(help="Processes (default: one per core).")] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write a ROC curve PNG here.")] = None,
    tta: Annotated[str | None, typer.Option("--tta", help="none, flip (default) or flip+views.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """LFW View-2 verification: mean accuracy ± std over the folds, TAR at FAR=1e-3."""
    from ..service import evaluation

    res = run(
        as_json,
        lambda: evaluation.lfw(
            pairs, images, model=model, tta=tta, workers=workers, plot=plot, progress=sys.stderr.isatty()
        ),
    )
    emit(res, as_json, _lfw_summary)


def _lfw_summary(res: dict[str, Any]) -> str:
    return (
        f"accuracy {res['accuracy']:.4f} ± {res['accuracy_std']:.4f} over {len(res['fold_accuracies'])} "
        f"folds; TAR {res['tar_at_far_1e-3']:.4f} at FAR=1e-3; no face detected in "
        f"{res['no_face_detected']} of {res['images']} images ({res['no_face_handling']}); "
        f"{res['seconds']} s"
    )


@eval_app.command("identify")
def eval_identify(
    images: Annotated[Path, typer.Option("--images", help="Folder with one sub-folder per identity.")],
    model: Annotated[str | None, typer.Option(help="Embedding model.")] = None,
    workers: Annotated[int | None, typer.Option(help="Processes (default: one per core).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Open-set 1:N on an identity-per-folder dataset: rank-1, FNIR at FPIR=0.01, FPIR at the default
    threshold."""
    from ..service import evaluation

    res = run(
        as_json,
        lambda: evaluation.identify(images, model=model, workers=workers, progress=sys.stderr.isatty()),
    )
    emit(res, as_json, lambda res: json.dumps(res, indent=2))


@eval_app.command("cluster")
def eval_cluster(
    images: Annotated[Path, typer.Option("--images", help="Folder with one sub-folder per identity.")],
    model: Annotated[str | None, typer.Option(help="Embedding model.")] = None,
    fmr: Annotated[float | None, typer.Option("--fmr", help="Grouping false-match rate.")] = None,
    workers: Annotated[int | None, typer.Option(help="Processes (default: one per core).")] = None,
    cache: Annotated[Path | None, typer.Option("--cache", help="Embeddings cache (.npz), reused.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Grouping faces into people (identity = folder): pairwise and BCubed precision/recall/F, people
    found, singletons; dlib's chinese whispers and DBSCAN (Immich's rule) on the same embeddings; the
    incremental build."""
    from ..service import library_cluster

    res = run(
        as_json,
        lambda: library_cluster.evaluate_clustering(
            str(images),
            model=model,
            fmr=fmr,
            workers=workers,
            cache=str(cache) if cache else None,
            progress=sys.stderr.isatty(),
        ),
    )
    emit(res, as_json, _cluster_summary)


def _cluster_summary(res: dict[str, Any]) -> list[str]:
    def line(name: str, m: dict[str, Any] | None) -> str:
        if m is None:
            return f"{name}: never as precise"
        return (
            f"{name}: pairwise P {m['pairwise_precision']:.4f} R {m['pairwise_recall']:.4f} "
            f"F {m['pairwise_f']:.4f}; BCubed P {m['bcubed_precision']:.4f} R {m['bcubed_recall']:.4f} "
            f"F {m['bcubed_f']:.4f}; {m['people_found']} people for {m['identities']} identities"
            + (f" (threshold {m['threshold']})" if "threshold" in m else "")
        )

    out = [line("facevault", res["facevault"]), line("incremental", res["incremental"])]
    for name, best in res["baselines_at_equal_precision"].items():
        out.append(line(f"{name} at equal precision", best))
    return out
