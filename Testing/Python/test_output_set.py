"""The output folder holds the whole old set or the whole new one, whatever fails and wherever a run is
killed; inputs are never inside it; file modes follow the umask."""

import json
import os
import re
import shutil
import stat
import subprocess
import sys

import pytest
import SimpleITK as sitk

from DIRVNetLib.cli.main import main
from DIRVNetLib.cli.tfstart import kept_lines
from DIRVNetLib.errors import OutputFolderError
from DIRVNetLib.io import outputset
from DIRVNetLib.io.atomic import atomic_path
from DIRVNetLib.io.outputset import OutputSet, recover

from conftest import DATA, shifted

NAMES = ("a.txt", "b.txt", "c.txt")


def write_set(folder, tag, names=NAMES):
    with OutputSet(folder, NAMES) as outputs:
        for name in names:
            outputs.path(name).write_text(f"{tag} {name}")
        outputs.commit()


def contents(folder):
    return {p.name: p.read_text() for p in sorted(folder.iterdir())}


def beside(folder):
    """Entries next to ``folder`` other than it (staging folders left behind)."""
    return sorted(p.name for p in folder.parent.iterdir() if p != folder)


@pytest.mark.parametrize("can_exchange", [True, False], ids=["exchange", "two-renames"])
def test_commit_replaces_the_whole_set(tmp_path, monkeypatch, can_exchange):
    if not can_exchange:
        monkeypatch.setattr(outputset, "exchange", lambda a, b: False)
    out = tmp_path / "out"
    write_set(out, "old")
    assert contents(out) == {n: f"old {n}" for n in NAMES}
    write_set(out, "new", names=NAMES[:2])  # a smaller set: c.txt of the old one must not remain
    assert contents(out) == {n: f"new {n}" for n in NAMES[:2]}
    assert beside(out) == []


def test_exchange_is_atomic_here(tmp_path):
    """Where renameat2 exists (Linux) the swap is one step; the test documents which path CI takes."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    (a / "x").write_text("a")
    if outputset.exchange(a, b):
        assert (b / "x").read_text() == "a" and not (a / "x").exists()
    else:
        pytest.skip("this system or file system cannot exchange folders atomically (two renames are used)")


def test_failure_while_writing_keeps_the_old_set(tmp_path):
    out = tmp_path / "out"
    write_set(out, "old")
    with pytest.raises(RuntimeError):
        with OutputSet(out, NAMES) as outputs:
            outputs.path("a.txt").write_text("new")
            raise RuntimeError("disk full")
    assert contents(out) == {n: f"old {n}" for n in NAMES}
    assert beside(out) == []


@pytest.mark.parametrize("state", ["between-renames", "before-swap", "after-swap", "while-writing"])
def test_recovery_after_a_kill_at_every_step(tmp_path, state):
    """The states a SIGKILL can leave (a dead writer's staging folders) are made by hand; the next run
    (or recover) ends with one whole set and no staging folders."""
    out = tmp_path / "out"
    write_set(out, "old")
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    ).stdout.strip()
    staged = {s: tmp_path / f".out.dirvnet-{s}-{dead}-0a1b2c3d" for s in ("partial", "complete", "old")}
    new = {n: f"new {n}" for n in NAMES}
    old = {n: f"old {n}" for n in NAMES}
    if state == "while-writing":
        staged["partial"].mkdir()
        (staged["partial"] / "a.txt").write_text("half")
        expected = old
    else:
        staged["complete"].mkdir()
        for name, text in new.items():
            (staged["complete"] / name).write_text(text)
        if state == "between-renames":
            os.rename(out, staged["old"])
            expected = new
        elif state == "before-swap":
            expected = old
        else:
            os.rename(out, staged["old"])
            os.rename(staged["complete"], out)
            expected = new
    recover(out)
    assert contents(out) == expected
    assert beside(out) == []


def test_staging_of_a_live_run_is_left_alone(tmp_path):
    out = tmp_path / "out"
    live = tmp_path / f".out.dirvnet-partial-{os.getppid()}-0a1b2c3d"
    live.mkdir()
    recover(out)
    assert live.is_dir()


def test_checks_before_anything_is_computed(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputFolderError, match="is a file"):
        OutputSet(tmp_path / "file", NAMES)
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(OutputFolderError, match=r"holds 'notes.txt', not part of an output set"):
        OutputSet(out, NAMES)
    (out / "notes.txt").unlink()
    (out / "a.txt").mkdir()  # an output name taken by a folder
    with pytest.raises(OutputFolderError, match=r"holds 'a.txt'"):
        OutputSet(out, NAMES)
    (out / "a.txt").rmdir()
    (out / "b.txt").write_text("an input")
    with pytest.raises(OutputFolderError, match=r"the moving image .*b.txt lies inside the output folder"):
        OutputSet(out, NAMES, inputs=[("moving", out / "b.txt")])
    os.symlink(out / "b.txt", tmp_path / "link")  # an input reached through a link is still inside
    with pytest.raises(OutputFolderError, match=r"the fixed image .*lies inside"):
        OutputSet(out, NAMES, inputs=[("fixed", tmp_path / "link")])
    with pytest.raises(OutputFolderError, match=r"cannot write beside output folder /proc/self/out"):
        OutputSet("/proc/self/out", NAMES)
    assert (out / "b.txt").read_text() == "an input" and beside(out) == ["file", "link"]


def test_symlinked_output_folder_keeps_its_link(tmp_path):
    real = tmp_path / "real"
    write_set(real, "old")
    (tmp_path / "link").symlink_to(real)
    write_set(tmp_path / "link", "new")
    assert (tmp_path / "link").is_symlink() and contents(real) == {n: f"new {n}" for n in NAMES}


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_modes_follow_the_umask(tmp_path, umask):
    previous = os.umask(umask)
    try:
        with OutputSet(tmp_path / "out", NAMES) as outputs:
            with atomic_path(outputs.path("a.txt")) as tmp:
                tmp.write_text("x")
            outputs.commit()
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "out" / "a.txt").stat().st_mode) == 0o666 & ~umask
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o777 & ~umask


# ---------------------------------------------------------------- through `dirvnet register`


@pytest.fixture
def images(tmp_path):
    image = sitk.ReadImage(str(DATA / "BrainT1Slice.png"), sitk.sitkFloat32)
    sitk.WriteImage(image, str(tmp_path / "fixed.nrrd"))
    sitk.WriteImage(shifted(image, 2.0), str(tmp_path / "moving.nrrd"))
    return tmp_path / "fixed.nrrd", tmp_path / "moving.nrrd"


def register_cli(fixed, moving, out, weights, *extra):
    return main(
        [
            "register",
            "--fixed",
            str(fixed),
            "--moving",
            str(moving),
            "--output-dir",
            str(out),
            "--weights",
            str(weights),
            "--no-progress",
            *extra,
        ]
    )


def test_cli_writes_and_replaces_a_whole_set(images, tmp_path, tiny_weights, capsys):
    out = tmp_path / "out"
    assert register_cli(*images, out, tiny_weights, "--mode", "fast") == 0  # the output set is under test
    first = sorted(p.name for p in out.iterdir())
    assert first == ["displacement.nrrd", "qa.png", "report.json", "transform.h5", "warped.nrrd"]
    report = json.loads((out / "report.json").read_text(), parse_constant=lambda c: pytest.fail(f"bare {c}"))
    assert report["warnings"] == [] and report["moving_labels"] is False
    assert register_cli(*images, out, tiny_weights, "--mode", "fast", "--no-figure") == 0  # no figure ...
    assert sorted(p.name for p in out.iterdir()) == [n for n in first if n != "qa.png"]  # ... nor the folder
    assert beside(out) == ["fixed.nrrd", "moving.nrrd"]
    assert "outputs in" in capsys.readouterr().out


@pytest.mark.parametrize(
    "case,message",
    [
        ("input-is-output", r"the moving image .*out/warped.nrrd lies inside the output folder"),
        ("output-is-file", r"output folder .*out is a file"),
        ("figure-is-folder", r"output folder .*out holds 'qa.png', not part of an output set"),
    ],
)
def test_cli_refuses_before_computing(images, tmp_path, tiny_weights, capsys, case, message):
    out = tmp_path / "out"
    moving = images[1]
    if case == "input-is-output":
        out.mkdir()
        moving = shutil.copy(images[1], out / "warped.nrrd")
    elif case == "output-is-file":
        out.write_text("x")
    else:
        (out / "qa.png").mkdir(parents=True)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert register_cli(images[0], moving, out, tiny_weights) == 2
    err = capsys.readouterr().err
    assert re.search(message, err) and err.count("\n") == 1, err
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    assert beside(out) == ["fixed.nrrd", "moving.nrrd"]


@pytest.mark.parametrize(
    "option,value,message",
    [
        ("--working-spacing", "inf", "must be a finite spacing > 0 mm, got 'inf'"),
        ("--working-spacing", "nan", "must be a finite spacing > 0 mm, got 'nan'"),
        ("--working-spacing", "0", "must be a finite spacing > 0 mm"),
        ("--coarse-pass", "0.5", "must be a finite factor >= 1, got '0.5'"),
        ("--refinement-rounds", "1.5", "must be a whole number >= 0, got '1.5'"),
    ],
)
def test_cli_options_out_of_range_are_named(images, tmp_path, tiny_weights, capsys, option, value, message):
    with pytest.raises(SystemExit) as exit_:
        register_cli(*images, tmp_path / "out", tiny_weights, f"{option}={value}")
    assert exit_.value.code == 2
    assert f"argument {option}: {message}" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_working_grid_too_large_is_refused_before_it_exists(images, tmp_path, tiny_weights, capsys):
    assert register_cli(*images, tmp_path / "out", tiny_weights, "--working-spacing", "1e-6") == 2
    assert re.search(r"registering a \d+x\d+ working grid needs about .* GiB", capsys.readouterr().err)
    assert not (tmp_path / "out").exists() and beside(tmp_path / "out") == ["fixed.nrrd", "moving.nrrd"]


def test_cpu_start_drops_only_known_noise():
    noise = (
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
        "I0000 00:00:1796030463.827097   16016 cudart_stub.cc:31] Could not find cuda drivers on your machine, "
        "GPU will not be used.\n"
        "E0000 00:00:1796030489.257426   16016 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: "
        "Failed call to cuInit: UNKNOWN ERROR (303)\n"
    )
    real = (
        "E0000 00:00:1796030489.257426   16016 cuda_platform.cc:52] failed call to cuInit: CUDA_ERROR_NO_DEVICE (100)"
    )
    assert kept_lines(noise + real + "\n") == [real]
    assert kept_lines(noise, device="gpu") == [noise.splitlines()[2]]  # asked for a GPU: the reason is kept
