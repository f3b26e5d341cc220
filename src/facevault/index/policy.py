"""When the embedded FAISS index switches kind, and the knobs of each kind.

Kinds, by live vector count ``n``:

- ``flat``  (n < hnsw_at): exact inner product, vectors in RAM (4*dim + ~24 bytes per face).
- ``hnsw``  (hnsw_at <= n < ivfpq_at): HNSW graph over the full vectors; exact scores, ~1 ms queries,
  but ~4*dim + 8*M bytes per face in RAM.
- ``ivfpq`` (n >= ivfpq_at): OPQ rotation + IVF coarse lists + PQ codes (pq_m bytes per face) in RAM,
  full float32 vectors in a file beside the index; the top ``rerank * k`` PQ candidates are re-scored
  exactly from that file, so returned scores are exact.

Switching goes up when a threshold is crossed and back down only below half of it (hysteresis, so one
enroll/erase pair at the boundary does not rebuild twice). Every value can be set per index (``tune``,
persisted in the index header) or for the whole process with ``FACEVAULT_INDEX_<FIELD>`` environment
variables, e.g. ``FACEVAULT_INDEX_IVFPQ_AT=2000000``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from ..config import index_policy_env
from ..errors import ConfigError

KINDS = ("flat", "hnsw", "ivfpq")


@dataclass(frozen=True)
class IndexPolicy:
    # Switching thresholds (live vectors). kind="auto" follows them; another kind pins it.
    kind: str = "auto"
    hnsw_at: int = 100_000
    ivfpq_at: int = 1_000_000
    # HNSW (faiss IndexHNSWFlat, inner product).
    hnsw_m: int = 32
    ef_construction: int = 80
    ef_search: int = 96
    # Deleted HNSW nodes are filtered at search time; the graph is rebuilt when they exceed this share.
    compact_ratio: float = 0.2
    # IVF-PQ. 0 = chosen from the size at build time (see nlist_for / pq_m_for).
    nlist: int = 0
    pq_m: int = 0
    pq_nbits: int = 4
    opq_iter: int = 20
    # Lists probed per query; 0 = max(512, nlist // 16). Face-like data without cluster structure needs
    # a large share of the lists: 512 gave rank-1 agreement >= 0.998 with exact search at 1M (of 2048
    # lists), 3M (4096) and 10M (8192); 256 fell to 0.978-0.996 (docs/INDEX.md).
    nprobe: int = 0
    # Shortlist re-ranked exactly from the on-disk vectors: max(rerank * k, min_shortlist) candidates.
    rerank: int = 16
    min_shortlist: int = 256
    # Training sample cap (k-means of the coarse quantizer and the OPQ/PQ codebooks).
    max_train: int = 400_000
    # Retrain the coarse quantizer when the index has grown this many times past its training size
    # (0 = never automatically; `rebuild()` does it on demand).
    retrain_growth: float = 8.0
    # IVF-PQ needs enough vectors to train 256-entry PQ codebooks.
    min_ivfpq_train: int = 1_000

    def kind_for(self, n: int, current: str | None = None) -> str:
        """The kind an index of ``n`` live vectors should have (hysteresis against ``current``)."""
        if self.kind != "auto":
            if self.kind == "ivfpq" and n < self.min_ivfpq_train:
                return "flat" if current in (None, "flat") else current
            return self.kind
        ivf_at = max(self.ivfpq_at, self.min_ivfpq_train)
        order = {k: i for i, k in enumerate(KINDS)}
        up = "ivfpq" if n >= ivf_at else "hnsw" if n >= self.hnsw_at else "flat"
        if current is None or order[up] >= order[current]:
            return up
        # going down: only once below half the threshold of the current kind
        floor = ivf_at if current == "ivfpq" else self.hnsw_at
        return up if n < floor // 2 else current

    def with_values(self, **values: Any) -> IndexPolicy:
        clean = {k: v for k, v in values.items() if v is not None}
        unknown = set(clean) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ConfigError(f"unknown index setting(s): {', '.join(sorted(unknown))}")
        if "kind" in clean and clean["kind"] not in ("auto", *KINDS):
            raise ConfigError(f"index kind must be auto, {', '.join(KINDS)}; got {clean['kind']!r}")
        return dataclasses.replace(self, **clean)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_env(cls, base: IndexPolicy | None = None, env: dict[str, str] | None = None) -> IndexPolicy:
        """``base`` overridden by ``FACEVAULT_INDEX_<FIELD>`` variables."""
        if env is None:
            env = {f"FACEVAULT_INDEX_{k.upper()}": v for k, v in index_policy_env().items()}
        base = base or cls()
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(f"FACEVAULT_INDEX_{f.name.upper()}")
            if raw is None:
                continue
            default = getattr(base, f.name)
            try:
                values[f.name] = raw if isinstance(default, str) else type(default)(float(raw))
            except ValueError as exc:
                raise ConfigError(f"FACEVAULT_INDEX_{f.name.upper()}={raw!r}: {exc}") from exc
        return base.with_values(**values)


def nlist_for(n: int) -> int:
    """Coarse lists: a power of two near 2*sqrt(n) (1M -> 2048, 10M -> 8192, 100M -> 16384 capped at
    65536): about 500-1200 vectors per list, so k-means and assignment stay affordable on 2 cores."""
    target = 2.0 * math.sqrt(max(n, 1))
    p = 2 ** round(math.log2(target))
    # k-means wants >= 39 points per centroid
    while p > 16 and p * 39 > n:
        p //= 2
    return int(min(max(p, 16), 65536))


def nprobe_for(nlist: int, nprobe: int = 0) -> int:
    return min(nlist, nprobe or max(512, nlist // 16))


def pq_m_for(dim: int, nbits: int = 4) -> int:
    """PQ sub-quantizers. 4-bit (fast scan, the default): dim/2 sub-quantizers of 2 dimensions,
    capped at 128 (128-d -> 64 x 4 bits = 32 bytes per face; 512-d -> 128 x 4 bits = 64 bytes).
    8-bit: 32 up to 256-d, 64 beyond. Fast scan needs an even count."""
    if nbits == 4:
        return max(2, min(128, dim // 2) // 2 * 2)
    if dim <= 32:
        return max(1, dim // 2)
    return 32 if dim <= 256 else 64
