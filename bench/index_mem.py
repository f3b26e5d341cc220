"""Resident memory of a saved index, measured in a fresh process (run by bench/index.py).

Prints JSON: anonymous resident memory (RssAnon, which excludes file-backed pages such as the IVF-PQ
vector rows read through the page cache) before and after loading the index and running probe searches.

    python -m bench.index_mem INDEX_PATH DIM MODEL_ID PROBES.npy
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def rss_kib() -> dict[str, int]:
    out: dict[str, int] = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("RssAnon", "RssFile", "VmRSS"):
            out[key] = int(value.split()[0])
    return out


def main() -> None:
    path, dim, model_id, probes = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    queries = np.load(probes)
    import faiss  # noqa: F401  (library pages are not the index's)

    from facevault.index import FaissIndex

    before = rss_kib()
    index = FaissIndex(path, dim, model_id)
    loaded = rss_kib()
    for q in queries:
        index.search(q[None, :], 10)
    after = rss_kib()
    print(json.dumps({"before": before, "loaded": loaded, "after_search": after, "count": len(index)}))


if __name__ == "__main__":
    main()
