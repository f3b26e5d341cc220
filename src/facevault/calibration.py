"""Score -> false-match-rate tables, one per embedding model.

A table is the impostor-score distribution of a model measured on data outside any evaluation fold
(see ``bench/calibrate.py``): ``fmr[i]`` is the fraction of impostor pairs scoring >= ``scores[i]``.
Below the smallest measured rate the tail is extrapolated log-linearly from the last decade that was
measured, and the result is marked as extrapolated. Thresholds shown to people come from here, so a
score is always paired with an honest error rate instead of a made-up "confidence %".
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np

from .errors import ConfigError


@dataclass(frozen=True)
class Calibration:
    model_id: str
    scores: np.ndarray  # ascending similarity grid
    fmr: np.ndarray  # non-increasing, in (0, 1]
    impostor_pairs: int
    source: str
    tail_slope: float  # d ln(FMR) / d score beyond the measured range (negative)

    @property
    def min_measured_fmr(self) -> float:
        return 1.0 / max(self.impostor_pairs, 1)

    def fmr_at(self, score: float) -> float:
        """Estimated false-match rate of a threshold set at ``score``."""
        s = float(score)
        if s <= self.scores[0]:
            return float(self.fmr[0])
        last = float(self.scores[-1])
        if s >= last:
            return float(self.fmr[-1] * math.exp(self.tail_slope * (s - last)))
        log_fmr = np.log(self.fmr)
        return float(math.exp(np.interp(s, self.scores, log_fmr)))

    def threshold_for(self, fmr: float) -> float:
        """The lowest similarity whose false-match rate is at most ``fmr``."""
        if not 0.0 < fmr < 1.0:
            raise ConfigError(f"false-match rate must be between 0 and 1, got {fmr}")
        if fmr >= self.fmr[0]:
            return float(self.scores[0])
        if fmr < self.fmr[-1]:
            return float(self.scores[-1] + math.log(fmr / self.fmr[-1]) / self.tail_slope)
        # fmr is non-increasing in score: interpolate on the reversed arrays.
        log_fmr = np.log(self.fmr)[::-1]
        return float(np.interp(math.log(fmr), log_fmr, self.scores[::-1]))

    def is_extrapolated(self, fmr: float) -> bool:
        return fmr < self.min_measured_fmr

    def to_json(self) -> dict[str, object]:
        return {
            "model_id": self.model_id,
            "impostor_pairs": self.impostor_pairs,
            "source": self.source,
            "tail_slope": self.tail_slope,
            "scores": [round(float(v), 5) for v in self.scores],
            "fmr": [float(f"{v:.6g}") for v in self.fmr],
        }


def search_fmr_for_gallery(gallery_samples: int, fpir: float, max_fmr: float) -> float:
    """Per-comparison FMR that keeps the expected false-positive identification rate of an open-set
    search over ``gallery_samples`` at about ``fpir`` (FPIR = 1 - (1 - FMR)^N ~ N x FMR)."""
    n = max(int(gallery_samples), 1)
    return float(min(max_fmr, 1.0 - (1.0 - fpir) ** (1.0 / n)))


def from_impostor_scores(model_id: str, impostor: np.ndarray, source: str, points: int = 400) -> Calibration:
    """Build a table from raw impostor similarities."""
    impostor = np.sort(np.asarray(impostor, dtype=np.float64))
    n = impostor.size
    if n < 100:
        raise ConfigError("need at least 100 impostor scores to calibrate")
    lo, hi = float(impostor[0]), float(impostor[-1])
    grid = np.linspace(lo, hi, points)
    # fraction of impostor scores >= grid value
    counts = n - np.searchsorted(impostor, grid, side="left")
    fmr = np.maximum(counts, 1) / n
    # Tail: fit ln(FMR) against score over the last measured decade with at least 10 pairs behind it.
    top = min(1e-2, 1000.0 / n)
    bottom = max(10.0 / n, top / 10.0)
    s_top = float(np.quantile(impostor, 1 - top))
    s_bottom = float(np.quantile(impostor, 1 - bottom))
    slope = (math.log(bottom) - math.log(top)) / max(s_bottom - s_top, 1e-6)
    keep = counts >= 10
    return Calibration(
        model_id=model_id,
        scores=grid[keep],
        fmr=fmr[keep],
        impostor_pairs=int(n),
        source=source,
        tail_slope=float(min(slope, -1e-3)),
    )


def from_json(data: dict[str, object]) -> Calibration:
    return Calibration(
        model_id=str(data["model_id"]),
        scores=np.asarray(data["scores"], dtype=np.float64),
        fmr=np.asarray(data["fmr"], dtype=np.float64),
        impostor_pairs=int(data["impostor_pairs"]),  # type: ignore[arg-type]
        source=str(data["source"]),
        tail_slope=float(data["tail_slope"]),  # type: ignore[arg-type]
    )


_registered: dict[str, Calibration] = {}


def register(cal: Calibration) -> None:
    _registered[cal.model_id] = cal


@cache
def _shipped(model_id: str) -> Calibration | None:
    ref = resources.files("facevault.models").joinpath("calibration", f"{model_id}.json")
    if not ref.is_file():
        return None
    return from_json(json.loads(ref.read_text(encoding="utf-8")))


def for_model(model_id: str) -> Calibration:
    if model_id in _registered:
        return _registered[model_id]
    cal = _shipped(model_id)
    if cal is None:
        raise ConfigError(f"no score calibration for model {model_id!r}; run bench/calibrate.py")
    return cal


def save(cal: Calibration, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(cal.to_json(), indent=1) + "\n", encoding="utf-8")
