"""Enrollment: one outcome per image, every named rejection reason, nothing half-written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from facevault.errors import ConsentError, NotFoundError

from .conftest import data_path, jpeg_bytes, lfw, write_image


def _reasons(outcomes) -> list[str | None]:  # type: ignore[no-untyped-def]
    return [o.reason for o in outcomes]


def test_enroll_stores_one_sample_per_good_image(people_vault, astronaut: np.ndarray, tmp_path: Path) -> None:
    a = write_image(tmp_path / "a.jpg", astronaut)
    b = write_image(tmp_path / "b.png", astronaut[:, ::-1].copy(), "PNG")
    out = people_vault.enroll("people", "Alice", [a, b])
    assert [o.status for o in out] == ["enrolled", "enrolled"]
    assert out[0].sample_id != out[1].sample_id
    assert out[0].quality["eye_distance"] > 24 and len(out[0].box) == 4
    subject = people_vault.get_subject("people", "Alice")
    assert [s["sample_id"] for s in subject["samples"]] == [out[0].sample_id, out[1].sample_id]
    assert all(s["model_id"] == "dlib-resnet-v1" for s in subject["samples"])


def test_every_rejection_reason_and_one_bad_image_never_stops_the_others(
    people_vault, astronaut: np.ndarray, tmp_path: Path
) -> None:
    good = write_image(tmp_path / "good.jpg", astronaut)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(jpeg_bytes(astronaut)[:3000])
    blank = write_image(tmp_path / "blank.jpg", np.full((200, 200, 3), 128, np.uint8))
    two = write_image(tmp_path / "two.jpg", np.hstack([astronaut, astronaut[:, ::-1]]))
    small = write_image(tmp_path / "small.jpg", np.asarray(Image.fromarray(astronaut).resize((170, 150))))
    blurred = np.asarray(Image.fromarray(astronaut).filter(ImageFilter.GaussianBlur(2)))
    blurry = write_image(tmp_path / "blurry.jpg", blurred)
    tilted = np.asarray(Image.fromarray(astronaut).rotate(40, expand=True, fillcolor=(128, 128, 128)))
    rolled = write_image(tmp_path / "rolled.jpg", tilted)
    dup = tmp_path / "copy-of-good.jpg"
    dup.write_bytes(good.read_bytes())
    missing = tmp_path / "missing.jpg"

    out = people_vault.enroll(
        "people", "Alice", [broken, blank, two, small, blurry, rolled, good, dup, missing]
    )
    assert _reasons(out) == [
        "unreadable_image",
        "no_face",
        "multiple_faces",
        "face_too_small",
        "blurry",
        "extreme_pose",
        None,
        "duplicate_image",
        "file_not_found",
    ]
    assert out[6].ok
    assert all(o.message for o in out if not o.ok)
    # rejected images leave nothing behind
    assert len(people_vault.get_subject("people", "Alice")["samples"]) == 1
    # the same image again, later, is still a duplicate
    assert _reasons(people_vault.enroll("people", "Alice", [good])) == ["duplicate_image"]


def test_largest_flag_picks_the_biggest_face(people_vault, astronaut: np.ndarray, tmp_path: Path) -> None:
    big = astronaut
    small = np.asarray(Image.fromarray(astronaut).resize((255, 225)))
    canvas = np.full((300, 340 + 255, 3), 90, np.uint8)
    canvas[:, :340] = big
    canvas[:225, 340:] = small
    p = write_image(tmp_path / "group.jpg", canvas)
    assert _reasons(people_vault.enroll("people", "Alice", [p])) == ["multiple_faces"]
    out = people_vault.enroll("people", "Alice", [p], largest=True)
    assert out[0].ok
    assert out[0].box[2] <= 345  # the face in the big, left-hand copy


def test_identity_conflict_with_another_subject(people_vault, astronaut: np.ndarray, tmp_path: Path) -> None:
    a = write_image(tmp_path / "a.jpg", astronaut)
    b = write_image(tmp_path / "b.jpg", np.asarray(Image.fromarray(astronaut).resize((360, 318))))
    assert people_vault.enroll("people", "Alice", [a])[0].ok
    out = people_vault.enroll("people", "Bob", [b])
    assert out[0].reason == "identity_conflict"
    assert "Alice" in out[0].message
    # but more photos of the same subject are welcome
    assert people_vault.enroll("people", "Alice", [b])[0].ok


def test_enroll_real_photos_of_one_person() -> None:
    import facevault

    v = facevault.open(create=True)
    v.create_collection("c")
    v.add_subject("c", "Colin Powell", purpose="test", consent_text="test")
    out = v.enroll("c", "Colin Powell", [lfw("Colin_Powell", i) for i in (1, 2, 3, 4)])
    assert sum(o.ok for o in out) >= 3, [o.to_dict() for o in out]


def test_multiple_faces_in_a_real_group_photo(people_vault) -> None:
    two = data_path("face_recognition_examples", "examples", "two_people.jpg")
    assert _reasons(people_vault.enroll("people", "Alice", [two])) == ["multiple_faces"]


def test_unknown_collection_or_subject(people_vault, astronaut: np.ndarray, tmp_path: Path) -> None:
    a = write_image(tmp_path / "a.jpg", astronaut)
    with pytest.raises(NotFoundError) as e:
        people_vault.enroll("nope", "Alice", [a])
    assert e.value.code == "collection_not_found"
    with pytest.raises(NotFoundError) as e:
        people_vault.enroll("people", "Zed", [a])
    assert e.value.code == "subject_not_found"


def test_bytes_input_and_expired_consent(vault, astronaut: np.ndarray) -> None:
    vault.create_collection("c")
    vault.add_subject("c", "Ann", purpose="p", consent_text="yes", expires="2999-01-01")
    out = vault.enroll("c", "Ann", [("upload.jpg", jpeg_bytes(astronaut))])
    assert out[0].ok and out[0].image == "upload.jpg"
    with pytest.raises(ConsentError, match="past"):
        vault.add_subject("c", "Old", purpose="p", consent_text="yes", expires="2001-01-01")


def test_the_same_image_committed_meanwhile_elsewhere_is_a_duplicate(
    people_vault, astronaut: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two enrollments of one photo both pass the early duplicate check; the one that commits second
    gets ``duplicate_image`` for it (not a database error), and the photo is stored and indexed once."""
    import facevault

    photo = write_image(tmp_path / "a.jpg", astronaut)
    other = facevault.open(str(people_vault.settings.home))  # a second handle, as another process has
    pipe = people_vault.pipeline("dlib-resnet-v1")
    analyze = pipe.analyze
    raced: list[bool] = []

    def analyze_then_let_the_other_commit(pixels, *args, **kwargs):  # type: ignore[no-untyped-def]
        faces = analyze(pixels, *args, **kwargs)
        if not raced:
            raced.append(True)
            assert other.enroll("people", "Alice", [photo])[0].ok
        return faces

    monkeypatch.setattr(pipe, "analyze", analyze_then_let_the_other_commit)
    second = write_image(tmp_path / "b.png", astronaut[:, ::-1].copy(), "PNG")
    out = people_vault.enroll("people", "Alice", [photo, second])
    other.close()
    assert raced
    assert [(o.status, o.reason) for o in out] == [("rejected", "duplicate_image"), ("enrolled", None)]
    samples = people_vault.get_subject("people", "Alice")["samples"]
    assert len(samples) == 2 and out[1].sample_id in {s["sample_id"] for s in samples}
    assert people_vault.index_info("people")["count"] == 2
    assert people_vault.verify_audit().ok


def test_a_face_resembling_another_subject_warns_and_enrolls_only_anyway(vault) -> None:
    """Tony Blair 50 scores 0.954 with Tony Blair 1-2: the strict conflict check (0.9555) misses it, the
    warning tier (the 1:N threshold for the gallery's size) names him; ``enroll_anyway`` enrolls it
    with a note; the wrong sample is then moved to Tony Blair and erased with a receipt (CLI too)."""
    from typer.testing import CliRunner

    from facevault.cli import app

    vault.create_collection("g")
    for name in ("Tony Blair", "Colin Powell"):
        vault.add_subject("g", name, purpose="testing", consent_text="signed (test)")
    assert [
        o.status for o in vault.enroll("g", "Tony Blair", [lfw("Tony_Blair", 1), lfw("Tony_Blair", 2)])
    ] == [
        "enrolled",
        "enrolled",
    ]
    [warned] = vault.enroll("g", "Colin Powell", [lfw("Tony_Blair", 50)])
    assert warned.reason == "resembles_another_subject"
    assert "subject #1 (Tony Blair) at similarity 0.95" in warned.message
    assert vault.get_subject("g", "Colin Powell")["samples"] == []
    [anyway] = vault.enroll_anyway("g", "Colin Powell", [lfw("Tony_Blair", 50)])
    assert anyway.status == "enrolled" and anyway.message.startswith("enrolled anyway: the face resembles")

    runner = CliRunner()
    home = str(vault.settings.home)
    sid = anyway.sample_id
    moved = runner.invoke(
        app,
        [
            "subject",
            "sample-move",
            "g",
            "name:Colin Powell",
            str(sid),
            "--to",
            "name:Tony Blair",
            "--home",
            home,
        ],
    )
    assert moved.exit_code == 0 and "to Tony Blair" in moved.stdout, moved.output
    assert sid in [s["sample_id"] for s in vault.get_subject("g", "Tony Blair")["samples"]]
    wrong = runner.invoke(
        app, ["subject", "sample-delete", "g", "name:Colin Powell", str(sid), "--home", home]
    )
    assert wrong.exit_code != 0  # no longer Colin Powell's
    erased = runner.invoke(
        app, ["subject", "sample-delete", "g", "name:Tony Blair", str(sid), "--home", home, "--json"]
    )
    assert erased.exit_code == 0, erased.output
    assert '"reason": "wrong sample deleted"' in erased.stdout
    assert [s["sample_id"] for s in vault.get_subject("g", "Tony Blair")["samples"]] == [1, 2]
