"""``dirvnet benchmark``: case lists, every installed baseline's conversion to our convention on a known
translation, the runner's skipped/failed rows, the report, and the command end to end on the tiny list.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from DIRVNetLib.cli.main import main
from DIRVNetLib.comparison import baselines, fields, report
from DIRVNetLib.comparison.cases import load_prepared, prepare, read_case_list, select
from DIRVNetLib.comparison.runner import measure

ROOT = Path(__file__).resolve().parents[2]
TINY_CASES = ROOT / "benchmarks" / "cases" / "tiny.json"
VALIDATION_CASES = ROOT / "benchmarks" / "cases" / "validation.json"


# ----------------------------------------------------------------------------- conventions


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n == "elastix" else n for n in baselines.BASELINES]
)
def test_each_baseline_recovers_a_known_translation_in_our_convention(name, data_dir, tmp_path, monkeypatch):
    """fixed(p) = moving(p + t) on a rotated, anisotropic grid: the returned field must be t (LPS mm,
    pull) on the fixed grid; a sign error would be off by 4 mm or more, a plain axis swap by 5 mm. Within
    0.8 mm for the classical tools, 1.5 mm for the trained VoxelMorph (measured 1.2 mm: a learned model
    trained on local smooth fields recovers this global translation of a half-resolution slice less
    precisely; its layout is checked exactly by the next test). No tool leaves files in the working
    directory."""
    method = baselines.make(name, voxelmorph_dir=Path(__file__).resolve().parents[2] / "benchmarks" / "voxelmorph")
    monkeypatch.chdir(tmp_path)
    ok, reason = method.available(2)
    if not ok:
        pytest.skip(reason)
    raw = sitk.ReadImage(str(data_dir / "BrainT1Slice.png"), sitk.sitkFloat32)[::2, ::2]
    moving = sitk.GetImageFromArray(sitk.GetArrayFromImage(raw))
    moving.SetSpacing((2.0, 2.5))
    moving.SetDirection((0.0, -1.0, 1.0, 0.0))
    moving.SetOrigin((40.0, -10.0))
    t = (3.0, -2.0)
    fixed = sitk.Resample(moving, moving, sitk.TranslationTransform(2, t), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    field = method.register(fixed, moving)
    assert field.GetSize() == fixed.GetSize() and field.GetNumberOfComponentsPerPixel() == 2
    assert np.allclose(field.GetOrigin(), fixed.GetOrigin()) and np.allclose(field.GetDirection(), fixed.GetDirection())
    inside = sitk.GetArrayFromImage(sitk.BinaryErode(sitk.OtsuThreshold(fixed, 0, 1), [3, 3])) > 0
    median = np.median(sitk.GetArrayFromImage(field)[inside], axis=0)
    assert np.allclose(median, t, atol=1.5 if name == "voxelmorph" else 0.8), (name, median)
    assert set(method.stages) and all(v >= 0 for v in method.stages.values())
    assert list(tmp_path.iterdir()) == []


def test_voxelmorph_displacement_layout_matches_our_flow():
    """vxm_to_flow: warping with VoxelMorph's own transformer equals our pull warp of the converted flow."""
    torch = pytest.importorskip("torch")
    vxm = pytest.importorskip("voxelmorph")
    from DIRVNetLib.comparison.voxelmorph_training import vxm_to_flow
    from DIRVNetLib.ops import warp

    rng = np.random.default_rng(0)
    image = rng.random((20, 24)).astype(np.float32)
    disp = np.zeros((2, 20, 24), np.float32)
    disp[0], disp[1] = 1.0, -2.0  # +1 voxel along axis 0 (y), -2 along axis 1 (x)
    theirs = vxm.nn.functional.spatial_transform(torch.from_numpy(image)[None, None], torch.from_numpy(disp))[
        0, 0
    ].numpy()
    ours = warp(image[None, ..., None], vxm_to_flow(disp)[None]).numpy()[0, ..., 0]
    assert np.allclose(theirs[3:-3, 3:-3], ours[3:-3, 3:-3], atol=1e-5)
    assert np.allclose(ours[3:-3, 3:-3], image[4:-2, 1:-5], atol=1e-5)


# ----------------------------------------------------------------------------- cases


def test_synthetic_cases_are_deterministic_and_their_true_field_explains_the_fixed_image():
    _, specs = read_case_list(TINY_CASES)
    first, again = prepare(specs[0]), prepare(specs[0])
    assert np.array_equal(sitk.GetArrayFromImage(first.true_field), sitk.GetArrayFromImage(again.true_field))
    magnitude = np.sqrt((sitk.GetArrayFromImage(first.true_field) ** 2).sum(-1)).max()
    assert magnitude == pytest.approx(specs[0]["max_mm"])
    from DIRVNetLib.metrics import displacement_transform

    warped = sitk.Resample(
        first.moving, first.fixed, displacement_transform(first.true_field), sitk.sitkLinear, 0.0, sitk.sitkFloat32
    )
    assert np.allclose(sitk.GetArrayFromImage(warped), sitk.GetArrayFromImage(first.fixed))
    assert first.mask is not None and 0.2 < sitk.GetArrayViewFromImage(first.mask).mean() < 0.9
    assert first.fixed.GetSpacing() == (2.0, 2.0)


def test_noisy_synthetic_cases_add_independent_noise_of_the_stated_level_to_both_images():
    _, specs = read_case_list(TINY_CASES)
    clean = prepare(specs[0])
    noisy, again = (prepare({**specs[0], "noise": 0.05}) for _ in range(2))
    assert np.array_equal(sitk.GetArrayFromImage(noisy.fixed), sitk.GetArrayFromImage(again.fixed))
    assert np.array_equal(sitk.GetArrayFromImage(noisy.true_field), sitk.GetArrayFromImage(clean.true_field))
    image = sitk.GetArrayFromImage(clean.moving).astype(np.float32)
    std = 0.05 * np.percentile(image, 99)
    fixed_noise = sitk.GetArrayFromImage(noisy.fixed) - sitk.GetArrayFromImage(clean.fixed)
    moving_noise = sitk.GetArrayFromImage(noisy.moving) - image
    for noise in (fixed_noise, moving_noise):
        assert abs(noise.std() / std - 1.0) < 0.1 and abs(noise.mean()) < 0.1 * std
    assert abs(np.corrcoef(fixed_noise.ravel(), moving_noise.ravel())[0, 1]) < 0.1
    assert noisy.fixed.GetOrigin() == clean.fixed.GetOrigin() and noisy.details["noise"] == 0.05
    with pytest.raises(ValueError, match="noise must be a number >= 0"):
        prepare({**specs[0], "noise": -0.1})


def test_case_lists_label_specs_and_saving(tmp_path, data_dir):
    labels = data_dir / "KmeansTest_T1KmeansPrelimSegmentation.nii.gz"
    spec = {
        "cases": [
            {
                "name": "crop",
                "type": "synthetic",
                "image": str(data_dir / "KmeansTest_T1UCharRaw.nii.gz"),
                "spacing": 8.0,
                "max_mm": 6.0,
                "seed": 3,
                "labels": {"file": str(labels), "map": {"5": 1, "6": 2}},
                "mask": {"file": str(data_dir / "KmeansTest_T1RawSkullStrip.nii.gz")},
                "seen_in_training": False,
            }
        ]
    }
    (tmp_path / "list.json").write_text(json.dumps(spec))
    _, specs = read_case_list(tmp_path / "list.json")
    case = prepare(specs[0])
    assert set(np.unique(sitk.GetArrayFromImage(case.moving_labels))) == {0, 1, 2}
    assert case.fixed_labels.GetSize() == case.fixed.GetSize() == case.mask.GetSize()
    case.save(tmp_path / "saved")
    loaded = load_prepared(tmp_path / "saved")
    assert loaded.name == "crop" and loaded.dimension == 3
    assert np.array_equal(sitk.GetArrayFromImage(loaded.fixed_labels), sitk.GetArrayFromImage(case.fixed_labels))

    for broken, message in (
        ({"cases": []}, "non-empty"),
        ({"cases": [{"name": "a", "type": "pair", "fixed": "x"}]}, "missing moving"),
        ({"cases": [{"name": "a", "type": "other"}]}, "'type' must be"),
    ):
        (tmp_path / "broken.json").write_text(json.dumps(broken))
        with pytest.raises(ValueError, match=message):
            read_case_list(tmp_path / "broken.json")


# ----------------------------------------------------------------------------- validation-only generators


def _grid(size=(60, 50), spacing=(1.5, 2.0)):
    """A small rotated, anisotropic 2D grid (the generators must honour spacing and direction)."""
    image = sitk.Image(list(size), sitk.sitkFloat32)
    image.SetSpacing(spacing)
    image.SetDirection((0.0, -1.0, 1.0, 0.0))
    image.SetOrigin((30.0, -12.0))
    return image


def _folding(field, image):
    from DIRVNetLib.metrics import jacobian_determinant

    true = sitk.GetImageFromArray(field, isVector=True)
    true.CopyInformation(image)
    return jacobian_determinant(true)


@pytest.mark.parametrize("generator", ["local_bumps", "sliding", "multi_scale"])
def test_validation_generators_honour_the_magnitude_are_deterministic_and_never_fold(generator):
    image = _grid()
    for max_mm in (2.0, 8.0):
        field = fields.draw(generator, image, max_mm, seed=5)
        again = fields.draw(generator, image, max_mm, seed=5)
        other = fields.draw(generator, image, max_mm, seed=6)
        assert field.shape == (50, 60, 2)
        assert np.sqrt((field**2).sum(-1)).max() == pytest.approx(max_mm)
        assert np.array_equal(field, again) and not np.allclose(field, other)
        assert _folding(field, image).min() > 0.4, (generator, max_mm)


def test_local_bumps_leave_everything_outside_their_balls_exactly_in_place():
    image = _grid((80, 80), (1.0, 1.0))
    region = sitk.Image(image.GetSize(), sitk.sitkUInt8)
    region.CopyInformation(image)
    region[40, 30] = 1  # the only allowed centre
    field = fields.draw("local_bumps", image, 3.0, seed=2, region=region, count=1, radius_mm=(12.0, 12.0))
    points = fields.coordinates(image)
    distance = np.linalg.norm(points - np.array(image.TransformIndexToPhysicalPoint((40, 30))), axis=-1)
    magnitude = np.sqrt((field**2).sum(-1))
    assert np.all(field[distance >= 12.0] == 0.0) and np.all(magnitude[distance < 11.0] > 0)
    assert magnitude[30, 40] == pytest.approx(3.0)  # numpy order: the centre moves most
    several = fields.draw("local_bumps", image, 3.0, seed=2, count=3, radius_mm=(10.0, 12.0))
    assert 0.4 < (np.sqrt((several**2).sum(-1)) == 0).mean() < 0.9
    with pytest.raises(ValueError, match="do not fit apart"):
        fields.draw("local_bumps", image, 3.0, seed=2, count=8, radius_mm=(30.0, 30.0))


def test_sliding_moves_both_sides_along_one_plane_in_opposite_directions():
    image = _grid()
    field = fields.draw("sliding", image, 4.0, seed=3).reshape(-1, 2)
    # every vector lies along one direction (the boundary line), pointing both ways
    _, singular, directions = np.linalg.svd(field, full_matrices=False)
    assert singular[1] < 1e-9 * singular[0]
    along = field @ directions[0]
    assert along.min() < -1.0 and along.max() > 1.0


def test_validation_case_list_uses_unseen_subjects_and_every_generator(tmp_path):
    _, specs = read_case_list(VALIDATION_CASES)
    assert {spec.get("generator", "smooth") for spec in specs} >= {"local_bumps", "sliding", "multi_scale"}
    benchmark_images = {
        Path(spec[key]).name
        for spec in read_case_list(ROOT / "benchmarks" / "cases" / "default.json")[1]
        for key in ("image", "moving_image", "fixed", "moving")
        if key in spec
    }
    for spec in specs:
        assert (Path(spec["_base"]) / spec["image"]).is_file(), spec["name"]
        if spec["name"].startswith("val-2d"):
            assert Path(spec["image"]).name not in benchmark_images, spec["name"]
    quick = [spec for spec in specs if spec["name"].startswith("val-2d")]
    _check_true_fields(quick)
    bad = {key: value for key, value in quick[0].items() if key != "_base"}
    (tmp_path / "bad.json").write_text(json.dumps({"cases": [{**bad, "generator": "spiral"}]}))
    with pytest.raises(ValueError, match="'generator' must be one of"):
        read_case_list(tmp_path / "bad.json")


def _check_true_fields(specs):
    for spec in specs:
        case = prepare(spec)
        assert case.details["generator"] == spec.get("generator", "smooth")
        true = sitk.GetArrayFromImage(case.true_field)
        assert np.sqrt((true**2).sum(-1)).max() == pytest.approx(spec["max_mm"])
        assert _folding(true, case.true_field).min() > 0, spec["name"]


@pytest.mark.slow
def test_validation_3d_cases_have_the_stated_magnitude_and_never_fold():
    _, specs = read_case_list(VALIDATION_CASES)
    volumes = [spec for spec in specs if spec["name"].startswith("val-3d")]
    assert volumes
    _check_true_fields(volumes)


# ----------------------------------------------------------------------------- runner and report


class _Failing(baselines.Method):
    name, label = "failing", "always fails"

    def register(self, fixed, moving):
        raise RuntimeError("tool crashed")


def test_unavailable_and_failing_methods_give_rows_with_reasons(tmp_path):
    _, specs = read_case_list(TINY_CASES)
    case = prepare(specs[0])
    skipped = measure(baselines.VoxelMorphMethod(model_dir=tmp_path), case)
    assert skipped["status"] == "skipped" and skipped["reason"]
    failed = measure(_Failing(), case)
    assert failed["status"] == "failed" and "tool crashed" in failed["reason"]
    table = report.accuracy_table([skipped, failed], {case.name: {"describe": case.describe()}})
    assert "| skipped [1] |" in table and "| failed [2] |" in table
    assert f"[1] {skipped['reason']}" in table and "[2] RuntimeError: tool crashed" in table


def test_voxelmorph_models_come_from_the_folder_given_never_from_a_repository_path(monkeypatch):
    monkeypatch.delenv(baselines.VOXELMORPH_ENV, raising=False)
    available, reason = baselines.VoxelMorphMethod().available(2)
    assert not available and "--voxelmorph-dir" in reason
    monkeypatch.setenv(baselines.VOXELMORPH_ENV, str(ROOT / "benchmarks" / "voxelmorph"))
    assert baselines.VoxelMorphMethod().model_path(2) == ROOT / "benchmarks" / "voxelmorph" / "vxm2d.pt"


def test_dirvnet_refinement_rounds_and_working_spacing_are_passed_on_and_reported(tmp_path, capsys):
    _, specs = read_case_list(TINY_CASES)
    case = prepare(specs[0])  # 2 mm pixels
    plain = measure(baselines.make("dirvnet-fast"), case, repeats=1)  # the bundled mr2d
    # on the pixels' 2 mm grid, where the 2D network leaves enough for a second round to find
    refined = measure(baselines.make("dirvnet-fast", refinement_rounds=2, working_spacing=2.0), case, repeats=1)
    coarser = measure(baselines.make("dirvnet-fast", working_spacing=3.0), case, repeats=1)
    steps = measure(baselines.make("dirvnet", refine_steps=5), case, repeats=1)
    assert plain["status"] == refined["status"] == coarser["status"] == steps["status"] == "ok"
    assert plain["label"] == "DIRV-Net, fast" and plain["refinement_rounds_used"] == 0
    assert (
        refined["label"] == "DIRV-Net, fast, 2 rounds, 2 mm grid" and "up to 2 refinement rounds" in refined["settings"]
    )
    assert refined["refinement_rounds_used"] >= 1 and refined["epe_mean_mm"] != plain["epe_mean_mm"]
    assert coarser["label"] == "DIRV-Net, fast, 3 mm grid" and "isotropic 3 mm working grid" in coarser["settings"]
    assert steps["label"] == "DIRV-Net, accurate, 5 steps" and "refinement" in steps["stages"]
    assert plain["working_grid"]["spacing_mm"] == [1.0, 1.0]  # the grid the 2D weights handle, not the 2 mm pixels
    assert coarser["working_grid"]["spacing_mm"] == [3.0, 3.0]
    assert steps["refinement_grid"] == steps["working_grid"] and plain.get("refinement_grid") is None
    assert coarser["working_grid"]["size"] == [round(n * 2 / 3) for n in case.fixed.GetSize()]
    for option, value, message in (
        ("--refinement-rounds", "-1", "--refinement-rounds must be >= 0, got -1"),
        ("--working-spacing", "0", "--working-spacing must be a spacing > 0 mm, got 0.0"),
        ("--only", "no-such-case", "no case called no-such-case; the list has t1-2d-tiny"),
    ):
        code = main(["benchmark", "--cases", str(TINY_CASES), "--output-dir", str(tmp_path), option, value])
        assert code == 2 and message in capsys.readouterr().err


def test_only_selects_cases_by_name_in_list_order():
    _, specs = read_case_list(ROOT / "benchmarks" / "cases" / "default.json")
    chosen = select(specs, ["t1-3d-8mm", "t1-2d-2mm"])
    assert [spec["name"] for spec in chosen] == ["t1-2d-2mm", "t1-3d-8mm"]
    assert select(specs, []) == specs
    with pytest.raises(ValueError, match="no case called t1-5d; the list has t1-2d-2mm, "):
        select(specs, ["t1-2d-2mm", "t1-5d"])


@pytest.mark.slow
def test_benchmark_command_end_to_end_on_the_tiny_list(tmp_path, tiny_weights, capsys):
    out = tmp_path / "bench"
    code = main(
        [
            "benchmark",
            "--cases",
            str(TINY_CASES),
            "--output-dir",
            str(out),
            "--weights",
            str(tiny_weights),
            "--repeats",
            "1",
            "--no-progress",
        ]
    )
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    _, specs = read_case_list(TINY_CASES)
    assert len(results["rows"]) == len(specs) * len(baselines.METHODS)
    by_method = {row["method"]: row for row in results["rows"]}
    for name, row in by_method.items():
        # the command's default VoxelMorph folder: ./benchmarks/voxelmorph of the current folder
        voxelmorph_dir = str((Path("benchmarks") / "voxelmorph").resolve())
        available, reason = baselines.make(
            name, weights={2: str(tiny_weights)}, voxelmorph_dir=voxelmorph_dir
        ).available(2)
        assert row["status"] == ("ok" if available else "skipped"), row
        if row["status"] == "ok":
            assert 0 < row["seconds"] and row["runs"] == 1 and row["epe_mean_mm"] >= 0
            assert row["epe_before_mean_mm"] > 0 and row["jacobian_nonpositive_percent"] >= 0
        else:
            assert row["reason"] == reason
    dirvnet = by_method["dirvnet"]
    assert set(dirvnet["stages"]) == {"load", "preprocess", "network", "refinement", "postprocess"}
    assert set(by_method["dirvnet-fast"]["stages"]) == {"load", "preprocess", "network", "postprocess"}
    assert dirvnet["warmup_seconds"] > 0 and dirvnet["weights"].endswith("tiny2d")
    assert results["machine"]["cpu cores"] >= 1 and "dirvnet benchmark --cases" in results["command"]
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():  # the CPU's vector extensions, which set TensorFlow's speed, are in the report
        flags = next(line for line in cpuinfo.read_text().splitlines() if line.startswith("flags")).split()
        extensions = results["machine"]["cpu vector extensions"]
        assert ("avx2" in flags) == extensions.startswith("avx2") and ("avx512f" in flags) == ("avx512f" in extensions)
    markdown = (out / "results.md").read_text()
    assert "| case | method | time s (median)" in markdown and "## Speed" in markdown
    assert (out / "accuracy_vs_time.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "cases" / specs[0]["name"] / "true_field.nrrd").is_file()
    assert "| DIRV-Net, accurate |" in capsys.readouterr().out


def test_voxelmorph_trains_on_the_dirvnet_runs_own_data(tmp_path):
    """The comparison model sees the same sampler as DIRV-Net: augmentation and field settings included."""
    pytest.importorskip("torch")
    pytest.importorskip("voxelmorph")
    from DIRVNetLib.comparison.voxelmorph_training import load_model, train

    run = {
        "network": {"ndim": 2, "levels": 2, "units": 1, "control_spacing": 4},
        "data": {
            "patch_shape": [32, 32],
            "max_magnitude": 3.0,
            "sources": ["chessboard"],
            "control_points": [3, 4],
            "augmentation": {"bias": 0.2},
        },
        "steps": 2,
        "batch_size": 2,
        "seed": 3,
    }
    record = train(run, tmp_path / "vxm.pt", progress=False)
    assert record["steps"] == 2 and record["data"]["control_points"] == [3, 4]
    model, multiple = load_model(tmp_path / "vxm.pt")
    import torch

    for size in (multiple, 3 * multiple):  # any multiple of the padding rule runs through the U-Net
        image = torch.zeros(1, 1, size, 2 * size)
        assert tuple(model(image, image).shape) == (1, 2, size, 2 * size)
    with pytest.raises(ValueError, match="control_points"):
        train({**run, "data": {**run["data"], "control_points": [4, 3]}}, tmp_path / "bad.pt", progress=False)
