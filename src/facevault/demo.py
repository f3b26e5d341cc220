"""The demo: the main job on the embedded default store, with photos that ship with a dependency.

It runs the real ``facevault`` commands (printed before each step) against ``$FACEVAULT_HOME``
(default ``./facevault-data``): create a collection, add a consented subject, enroll transformed
copies of scikit-image's astronaut photo (Eileen Collins, NASA, public domain), search with another
copy, verify, check the audit chain and the store/index agreement. Needs no ``../shared`` data.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from .config import home_from_env

COLLECTION = "demo"


def _photos(folder: Path) -> dict[str, Path]:
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    base = Image.fromarray(np.ascontiguousarray(data.astronaut()[:300, 60:400]))
    variants = {
        "enroll-1.jpg": base,
        "enroll-2.jpg": base.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
        "enroll-3.jpg": ImageEnhance.Brightness(base.rotate(6, fillcolor=(90, 90, 90))).enhance(0.75),
        "enroll-4.png": base.resize((300, 265)),
        "enroll-blurry.jpg": base.filter(ImageFilter.GaussianBlur(3)),
        "probe.jpg": ImageEnhance.Contrast(
            base.rotate(-5, fillcolor=(60, 60, 60)).crop((10, 0, 330, 300))
        ).enhance(1.3),
        "no-face.jpg": Image.fromarray(data.coffee()),
    }
    out = {}
    for name, img in variants.items():
        path = folder / name
        img.save(path, quality=80) if name.endswith(".jpg") else img.save(path)
        out[name] = path
    return out


def _run(*args: str | Path, ok: tuple[int, ...] = (0,)) -> int:
    cmd = ["facevault", *[str(a) for a in args]]
    print(f"\n$ {shlex.join(cmd)}", flush=True)
    proc = subprocess.run([sys.executable, "-m", "facevault.cli", *cmd[1:]], check=False)
    if proc.returncode not in ok:
        raise SystemExit(f"demo step failed with exit code {proc.returncode}: {shlex.join(cmd)}")
    return proc.returncode


def main() -> None:
    home = home_from_env()
    os.environ["FACEVAULT_HOME"] = str(home)  # for the commands run as child processes
    photos = _photos(home / "demo-images")
    _run("init")
    # Re-running the demo starts its collection afresh; nothing else in the vault is touched.
    listing = subprocess.run(
        [sys.executable, "-m", "facevault.cli", "collection", "list", "--json"],
        capture_output=True,
        text=True,
    )
    if f'"name": "{COLLECTION}"' in listing.stdout:
        _run("collection", "delete", COLLECTION, "--yes")
    _run("collection", "create", COLLECTION)
    _run(
        "subject",
        "add",
        COLLECTION,
        "--name",
        "Eileen Collins",
        "--external-id",
        "astronaut-1",
        "--purpose",
        "facevault demo",
        "--consent-text",
        "Public-domain NASA portrait used as demo data",
    )
    enroll = [
        photos[n]
        for n in (
            "enroll-1.jpg",
            "enroll-2.jpg",
            "enroll-3.jpg",
            "enroll-4.png",
            "enroll-blurry.jpg",
            "enroll-1.jpg",
        )
    ]
    print("\n# one photo is too blurry and one is a duplicate: both are refused with a reason")
    _run("enroll", COLLECTION, "astronaut-1", *enroll, ok=(0, 10))
    _run("subject", "list", COLLECTION)
    _run("search", COLLECTION, photos["probe.jpg"], "--purpose", "demo search", "--case", "DEMO-1")
    print("\n# a photo without a face is a clear error, not a guess")
    _run("search", COLLECTION, photos["no-face.jpg"], "--purpose", "demo search", ok=(3,))
    _run("verify", photos["enroll-1.jpg"], photos["probe.jpg"])
    _run("audit", "list", "--limit", "5")
    _run("audit", "verify")
    _run("doctor")
    print(f"\nDemo finished. The vault is in {home.resolve()}; try `facevault --home {home} --help`.")


if __name__ == "__main__":
    main()
