"""Evaluation use cases: the protocols of ``facevault.eval`` run with a vault's settings, so the edges
(``facevault eval ...``) name a dataset and a model and call nothing below the service."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import load_settings


def lfw(
    pairs: str | Path,
    images: str | Path,
    *,
    model: str | None = None,
    tta: str | None = None,
    workers: int | None = None,
    plot: str | Path | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """LFW View-2 verification (``facevault.eval.lfw``) with ``model`` (default: the settings' model)."""
    from ..eval.lfw import run_lfw

    settings = load_settings(tta=tta)
    return run_lfw(
        pairs,
        images,
        model_id=model or settings.default_model,
        settings=settings,
        workers=workers,
        plot=plot,
        progress=progress,
    )


def identify(
    images: str | Path,
    *,
    model: str | None = None,
    workers: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Open-set 1:N identification (``facevault.eval.identify``) on an identity-per-folder dataset."""
    from ..eval.identify import run_identify

    settings = load_settings()
    return run_identify(
        images,
        model_id=model or settings.default_model,
        settings=settings,
        workers=workers,
        progress=progress,
    )
