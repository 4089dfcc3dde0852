"""``register(fixed, moving, ...)``: the one inference entry point of every front door.

Displacements returned are SimpleITK vector images on the fixed grid in physical LPS mm, pull
convention ``warped(p) = moving(p + u(p))`` (ITK displacement-field transform, Slicer
"transform from parent").
"""

from __future__ import annotations

import dataclasses
import functools
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk
import tensorflow as tf

from DIRVNetLib.errors import InputImageError, PointsError, WeightSetError
from DIRVNetLib.io.images import ImageInput
from DIRVNetLib.io.points import point_pairs
from DIRVNetLib.io.resample import coarser_reference, resample_like, warp_image
from DIRVNetLib.io.weights import load_weight_set, resolve
from DIRVNetLib.metrics import (
    displacement_transform,
    jacobian_determinant,
    jacobian_statistics,
    nonpositive_percent,
    similarity_report,
)
from DIRVNetLib.model import DIRVNet
from DIRVNetLib.ops import compiled_warp, upsample_flow
from DIRVNetLib.preprocessing import normalise_intensity
from DIRVNetLib.registration.checks import check_arguments, check_finite, check_finite_report
from DIRVNetLib.registration.folding import remove_folding
from DIRVNetLib.registration.geometry import WorkingGrid, check_overlap, resample_displacement
from DIRVNetLib.registration.grids import choose_grids
from DIRVNetLib.registration.memory import check_memory
from DIRVNetLib.registration.modes import DEFAULT_MODE, coarse_pass_for, finest_level_for, settings_for
from DIRVNetLib.registration.point_correction import correct_with_points
from DIRVNetLib.registration.point_refinement import refine_near_points
from DIRVNetLib.registration.progress import Progress, UnitMonitor
from DIRVNetLib.registration.refinement import RefinementSettings, refine_flow

_NETWORKS = {}  # (weight-set path, sha256) -> DIRVNet, so repeated calls skip building and tracing


@dataclasses.dataclass
class RegistrationResult:
    """displacement: vector image on the fixed grid (LPS mm); warped: moving resampled on the fixed grid;
    report: timings (s), similarity before/after, Jacobian statistics (computed in float32), settings;
    fixed: the fixed image (float32) and moving_resampled: the moving image on the fixed grid before
    registration (for QA); intermediate: ``(round, level, unit, displacement)`` per unit when asked (the
    displacement reached after that unit of that round, on the fixed grid, LPS mm); transform: the
    displacement's ITK displacement-field transform, built when first asked for (a copy of the field)."""

    displacement: sitk.Image
    warped: sitk.Image
    report: dict[str, Any]
    fixed: sitk.Image
    moving_resampled: sitk.Image
    intermediate: list[tuple[int, int, int, sitk.Image]]

    @functools.cached_property
    def transform(self) -> sitk.DisplacementFieldTransform:
        return displacement_transform(self.displacement)


def _normalised(image):
    """The intensity-normalised float32 array of ``image`` (read through a view, which SimpleITK does
    not keep alive: ``image`` is referenced here until the copy is made)."""
    return normalise_intensity(sitk.GetArrayViewFromImage(image))


def _network(weight_set):
    key = (str(weight_set.path.resolve()), weight_set.checksum)
    if key not in _NETWORKS:
        network = DIRVNet(weight_set.config)
        try:
            network.set_weights(weight_set.weights)
        except ValueError as e:
            raise WeightSetError(f"weight set {weight_set.path}: {e}") from e
        _NETWORKS[key] = network
    return _NETWORKS[key]


def _device_scope(device):
    """The TensorFlow device scope of a device name already checked by :mod:`checks`."""
    if device == "gpu":
        if not tf.config.list_physical_devices("GPU"):
            raise ValueError("device 'gpu' was asked for but TensorFlow sees no GPU")
        return tf.device("/GPU:0")
    if device == "cpu":
        return tf.device("/CPU:0")
    return tf.device(None)


def _run_network(network, fixed, moving, monitor, rounds, whole_graph, initial=None, finest_level=0):
    """Network flow ``[*S, N]`` (working voxels), refined recurrently up to ``rounds`` times: the
    warped image is registered again and the fields composed, ``u <- v + u o (x + v)``, while the mean
    squared residual keeps falling. Also returns the mean squared residual after each round (none
    computed without refinement). whole_graph: each pass as one graph (``monitor`` then sees no unit).
    initial: a flow ``[1, *S, N]`` to start from (the first pass registers the moving image warped by it,
    and the two are composed). finest_level: the finest pyramid level each pass runs."""
    fixed_t = tf.constant(fixed[np.newaxis, ..., np.newaxis])
    moving_t = tf.constant(moving[np.newaxis, ..., np.newaxis])

    def network_flow(moving_image):
        if whole_graph:
            return network.final_flow(fixed_t, moving_image, finest_level)
        return network(fixed_t, moving_image, on_unit=monitor, finest_level=finest_level).flow

    def refined(flow):
        """``flow`` composed with the network's flow for the moving image warped by it."""
        update = network_flow(compiled_warp(moving_t, flow))
        return update + compiled_warp(flow, update)

    flow = network_flow(moving_t) if initial is None else refined(initial)
    if rounds == 0:
        return flow[0].numpy(), []
    residual = float(tf.reduce_mean(tf.square(compiled_warp(moving_t, flow) - fixed_t)))
    residuals = [residual]
    for round_index in range(1, rounds + 1):
        monitor.round = round_index
        candidate = refined(flow)
        candidate_residual = float(tf.reduce_mean(tf.square(compiled_warp(moving_t, candidate) - fixed_t)))
        if candidate_residual >= residual:
            break
        flow, residual = candidate, candidate_residual
        residuals.append(residual)
    return flow[0].numpy(), residuals


def register(
    fixed: ImageInput,
    moving: ImageInput,
    weights: str | os.PathLike[str] | None = None,
    device: str = "auto",
    *,
    progress: Callable[[Progress], object] | None = None,
    cancel: threading.Event | Callable[[], bool] | None = None,
    refinement_rounds: int = 0,
    working_spacing: float | None = None,
    isotropic: bool = True,
    refinement_spacing: float | None = None,
    keep_intermediate: bool = False,
    unfold: bool = True,
    whole_graph: bool = False,
    coarse_pass: float | None = None,
    moving_labels: bool | None = None,
    mode: str = DEFAULT_MODE,
    refine_steps: int | None = None,
    refinement: RefinementSettings | None = None,
    fallback: bool = True,
    fixed_points: str | Path | npt.ArrayLike | None = None,
    moving_points: str | Path | npt.ArrayLike | None = None,
    points_radius: float | None = None,
) -> RegistrationResult:
    """Register ``moving`` to ``fixed`` with DIRV-Net.

    fixed, moving: SimpleITK scalar images (2D or 3D, any size, spacing, origin, direction) or paths
    (files SimpleITK reads, or DICOM series folders). weights: None (bundled default for the dimension),
    a bundled weight-set name, or a weight-set folder. device: "auto", "cpu" or "gpu".
    progress: ``callable(Progress)`` after every unit; cancel: ``threading.Event`` or callable, checked
    after every unit (raises :class:`RegistrationCancelled`). refinement_rounds: recurrent refinement
    rounds (stops early when the residual stops falling). working_spacing: run the network on an isotropic
    grid of this spacing (mm); otherwise on the fixed image's grid (made isotropic at its finest spacing
    when anisotropic and ``isotropic``) when the weights handle its spacing, else on an isotropic grid at
    the weights' training spacing (:mod:`grids`). refinement_spacing: run the refinement on an isotropic
    grid of this spacing (mm) instead of the network's grid. keep_intermediate: also return every unit's
    displacement (the mode's coarse pass is then skipped, and the network runs every pyramid level).
    unfold: remove residual folding of the field (:mod:`folding`), on the grid it was made on and then on
    the fixed grid (the report gives the field's own folding, ``network_jacobian_nonpositive_percent``,
    and the voxels changed on each grid, ``unfolded_voxels`` and ``unfolded_voxels_fixed_grid``).
    whole_graph: run each network pass as one graph instead of one graph call per unit, for loops over
    many pairs of one size (cine frames, benchmarks): faster per call, but the first call for an image
    size traces longer; it rules out ``progress``, ``cancel`` and ``keep_intermediate``, which need every
    unit.
    coarse_pass: a factor > 1: first register on a working grid this many times coarser (displacements
    are then fewer voxels long, where the network is more accurate), then on the working grid starting
    from that field (composed); 1: no such pass; None: the mode's (:mod:`modes`). It rules out
    ``keep_intermediate``. moving_labels: the moving image is a label
    map, warped with nearest neighbour in its own pixel type (None: detected, :mod:`checks`).
    mode: ``"accurate"`` (the network, then test-time refinement: :mod:`refinement`; in 3D the network's
    finest pyramid level is left to the refinement, ``report["network_finest_level"]``) or ``"fast"`` (the
    network alone); :mod:`modes`. refine_steps: the most refinement steps (replaces the mode's; 0: none);
    refinement: a :class:`~DIRVNetLib.registration.refinement.RefinementSettings` replacing the mode's.
    fallback: when the result is less similar to the fixed image than the input (NCC and MI both lower),
    return the identity instead; either way ``report["warnings"]`` says so.
    fixed_points, moving_points: corresponding points (point files or (N, dim) arrays, LPS mm) where the
    result must carry each fixed point to its moving point: the field is corrected locally around them
    (:mod:`point_correction`, within ``points_radius`` mm); with the refinement, their neighbourhood is
    refined again with its landmark term (:mod:`point_refinement`; farther away the field is the one
    without points), and corrected once more at the end, also after a fall-back (the report's
    ``point_correction`` gives the error at each point before and after that, and ``radius_mm``: how far
    from the points the field may differ from the one without them).
    Inputs are never modified; arguments are checked first (:mod:`checks`), and a non-finite result is
    an error.
    Returns a :class:`RegistrationResult` (``report["seconds"]["total"]`` includes the report's statistics).
    """
    timings = {}
    started = time.perf_counter()
    checked = check_arguments(
        fixed,
        moving,
        weights=weights,
        device=device,
        progress=progress,
        cancel=cancel,
        refinement_rounds=refinement_rounds,
        working_spacing=working_spacing,
        refinement_spacing=refinement_spacing,
        isotropic=isotropic,
        keep_intermediate=keep_intermediate,
        unfold=unfold,
        whole_graph=whole_graph,
        coarse_pass=coarse_pass,
        moving_labels=moving_labels,
        refine_steps=refine_steps,
        fallback=fallback,
        points_radius=points_radius,
    )
    fixed_image, moving_image = checked.fixed, checked.moving
    dimension = fixed_image.GetDimension()
    if moving_image.GetDimension() != dimension:
        raise InputImageError(f"fixed image is {dimension}D but moving image is {moving_image.GetDimension()}D")
    check_overlap(fixed_image, moving_image)
    weight_set = load_weight_set(resolve(weights, dimension))
    if weight_set.dimension != dimension:
        raise WeightSetError(
            f"weight set {weight_set.path} is for {weight_set.dimension}D images but the images are {dimension}D"
        )
    if whole_graph and (progress is not None or cancel is not None or keep_intermediate):
        raise ValueError(
            "whole_graph runs no code between units: it cannot be combined with progress, cancel or keep_intermediate"
        )
    if coarse_pass not in (None, 1) and keep_intermediate:
        raise ValueError("keep_intermediate cannot be combined with coarse_pass (its units lie on another grid)")
    coarse_pass = None if keep_intermediate else coarse_pass_for(mode, dimension, coarse_pass)
    settings = settings_for(mode, dimension, refine_steps, refinement)
    finest_level = 0 if keep_intermediate else finest_level_for(mode, dimension, settings.steps)
    pairs = None
    if fixed_points is not None or moving_points is not None:
        if fixed_points is None or moving_points is None:
            raise PointsError("fixed_points and moving_points go together: give both, one moving point per fixed point")
        pairs = point_pairs(fixed_points, moving_points, fixed_image)
    timings["load"] = time.perf_counter() - started

    with _device_scope(device):
        mark = time.perf_counter()
        config = weight_set.config
        grids = choose_grids(fixed_image, weight_set.metadata, working_spacing, isotropic, refinement_spacing)
        estimated = check_memory(
            config.padded_shape(WorkingGrid.shape_for(fixed_image, grids.network_spacing, isotropic)), config
        )
        grid = WorkingGrid.for_fixed(fixed_image, grids.network_spacing, isotropic)
        on_fixed_grid = grid.matches(fixed_image)
        fixed_on_grid = fixed_image if on_fixed_grid else resample_like(fixed_image, grid.reference)
        moving_on_grid = resample_like(moving_image, grid.reference)
        fixed_working, moving_working = _normalised(fixed_on_grid), _normalised(moving_on_grid)
        if coarse_pass is not None:
            coarse = coarser_reference(grid.reference, coarse_pass)
            fixed_coarse = _normalised(resample_like(fixed_image, coarse))
            moving_coarse = _normalised(resample_like(moving_image, coarse))
        network = _network(weight_set)
        refine_grid = grid  # where the refinement runs, and the grid of ``flow`` after it
        if settings.steps and grids.refinement_spacing is not None:
            refine_grid = WorkingGrid.for_fixed(fixed_image, grids.refinement_spacing)
        if refine_grid is not grid:
            fixed_refined = _normalised(resample_like(fixed_image, refine_grid.reference))
            moving_refined = _normalised(resample_like(moving_image, refine_grid.reference))
        else:
            fixed_refined, moving_refined = fixed_working, moving_working
        timings["preprocess"] = time.perf_counter() - mark

        mark = time.perf_counter()
        units = (config.levels - finest_level) * config.units * (1 + refinement_rounds)
        units += config.levels * config.units * (coarse_pass is not None)
        monitor = UnitMonitor(
            units + settings.steps * (1 + (pairs is not None)),
            progress,
            cancel,
            keep=keep_intermediate,
        )
        monitor.check_cancel()
        initial = None
        if coarse_pass is not None:
            monitor.stage = "coarse pass, "
            coarse_flow, _ = _run_network(network, fixed_coarse, moving_coarse, monitor, 0, whole_graph)
            monitor.stage = ""
            initial = upsample_flow(coarse_flow[np.newaxis], coarse_pass, grid.shape)
        flow, residuals = _run_network(
            network, fixed_working, moving_working, monitor, refinement_rounds, whole_graph, initial, finest_level
        )
        timings["network"] = time.perf_counter() - mark
        check_finite(flow, "network's displacement field")

        refined = None
        if settings.steps:
            mark = time.perf_counter()
            monitor.round = 0
            if refine_grid is not grid:
                on_grid = resample_displacement(grid.flow_to_displacement(flow), refine_grid.reference)
                flow = refine_grid.displacement_to_flow(on_grid)
            network_flow = flow
            flow, refined = refine_flow(fixed_refined, moving_refined, flow, settings, on_step=monitor.step)
            refined.pop("energies")
            if pairs is not None:
                flow, refined["near_points"] = refine_near_points(
                    refine_grid,
                    fixed_refined,
                    moving_refined,
                    network_flow,
                    flow,
                    refined,
                    settings,
                    pairs,
                    points_radius,
                    on_step=monitor.step,
                )
            monitor.finish()
            timings["refinement"] = time.perf_counter() - mark

        mark = time.perf_counter()
        # folding is measured and repaired on the field's own grid, then on the fixed grid, where the linear
        # interpolation of a field that does not fold can still fold (a far smaller repair there); both fields
        # are made here, so they are repaired in place
        made = refine_grid.flow_to_displacement(flow)
        determinant = jacobian_determinant(made, np.float32)
        network_folding = nonpositive_percent(determinant)
        unfolded_voxels = unfolded_on_fixed_grid = 0
        if unfold and network_folding > 0:
            made, unfolded_voxels, determinant = remove_folding(made, determinant=determinant, in_place=True)
        displacement = resample_displacement(made, fixed_image)
        if displacement is not made:
            determinant = jacobian_determinant(displacement, np.float32)
            if unfold and nonpositive_percent(determinant) > 0:
                displacement, unfolded_on_fixed_grid, determinant = remove_folding(
                    displacement, determinant=determinant, in_place=True
                )
        jacobian = jacobian_statistics(displacement, determinant=determinant)

        def warp_moving(displacement):
            return warp_image(moving_image, displacement, checked.moving_labels, checked.moving_pixel_id)

        warped = warp_moving(displacement)
        moving_on_fixed = moving_on_grid if on_fixed_grid else resample_like(moving_image, fixed_image)
        similarity = similarity_report(fixed_image, moving_on_fixed, warped)
        warnings, fell_back = [], False
        if similarity["ncc_after"] < similarity["ncc_before"] and similarity["mi_after"] < similarity["mi_before"]:
            worse = (
                "the registered moving image is less similar to the fixed image than the input (NCC "
                f"{similarity['ncc_before']:.4f} -> {similarity['ncc_after']:.4f}, "
                f"MI {similarity['mi_before']:.3f} -> {similarity['mi_after']:.3f})"
            )
            if fallback:
                displacement = _zero_like(displacement)
                jacobian = jacobian_statistics(displacement, dtype=np.float32)
                warped = warp_moving(displacement)
                similarity = similarity_report(fixed_image, moving_on_fixed, warped)
                warnings.append(worse + ": the identity transform was returned instead")
                fell_back = True
            else:
                warnings.append(worse + "; returned as asked (fallback off)")
        point_report = None
        if pairs is not None:  # the user's pairs hold whatever the images say
            corrected_at = time.perf_counter()
            displacement, point_report = correct_with_points(displacement, *pairs, radius=points_radius)
            if refined is not None and not fell_back:
                point_report["radius_mm"] = max(point_report["radius_mm"], refined["near_points"]["radius_mm"])
            jacobian = jacobian_statistics(displacement, dtype=np.float32)
            warped = warp_moving(displacement)
            similarity = similarity_report(fixed_image, moving_on_fixed, warped)
            timings["point_correction"] = time.perf_counter() - corrected_at
        intermediate = [
            (r, level, unit, _intermediate_displacement(network, grid, control, level, fixed_image))
            for r, level, unit, control in monitor.kept
        ]
        timings["postprocess"] = time.perf_counter() - mark
    timings["total"] = time.perf_counter() - started

    report = {
        "weights": str(weight_set.path),
        "device": device,
        "working_grid": _grid_report(grid),
        "refinement_grid": _grid_report(refine_grid) if refined is not None else None,
        "weights_handle_spacing_mm": None if grids.handled_mm is None else list(grids.handled_mm),
        "whole_graph": whole_graph,
        "coarse_pass": coarse_pass,
        "network_finest_level": finest_level,
        "mode": mode,
        "refinement": None if refined is None else {"settings": dataclasses.asdict(settings), **refined},
        "fell_back_to_identity": fell_back,
        "refinement_rounds_used": max(len(residuals) - 1, 0),
        "residual_mse_per_round": residuals,
        "estimated_memory_gib": estimated / 1024**3,
        "network_jacobian_nonpositive_percent": network_folding,
        "unfolded_voxels": unfolded_voxels,
        "unfolded_voxels_fixed_grid": unfolded_on_fixed_grid,
        "point_correction": point_report,
        "seconds": timings,
        **similarity,
        **jacobian,
        "moving_labels": checked.moving_labels,
        "warnings": checked.warnings + list(grids.warnings) + warnings,
    }
    check_finite_report(report)
    return RegistrationResult(displacement, warped, report, fixed_image, moving_on_fixed, intermediate)


def _grid_report(grid):
    return {"size": list(grid.reference.GetSize()), "spacing_mm": list(grid.reference.GetSpacing())}


def _zero_like(displacement):
    zero = sitk.Image(displacement.GetSize(), sitk.sitkVectorFloat64, displacement.GetDimension())
    zero.CopyInformation(displacement)
    return zero


def _intermediate_displacement(network, grid, control, level, fixed_image):
    padded = network.config.padded_shape(grid.shape)
    flow = network.control_to_flow(control, level, padded, grid.shape)[0].numpy()
    return resample_displacement(grid.flow_to_displacement(flow), fixed_image)
