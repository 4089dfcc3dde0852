"""The test-time refinement near point pairs: where the user's pairs say the result is wrong, and only there.

The refinement without points gives ``refined``. Near the pairs, the network's flow is first corrected
at them (:func:`~DIRVNetLib.registration.point_correction.correct_with_points`, radius R) and refined
again with the landmark term, in a box around them; the two are blended with
:func:`~DIRVNetLib.registration.point_correction.support_weight` over R (1 at the points, 0 from R on):
farther than R from every fixed point the field is exactly the one without points.
"""

import dataclasses

from DIRVNetLib.registration.point_correction import correct_with_points, support_box, support_weight
from DIRVNetLib.registration.refinement import Landmarks, refine_flow


def refine_near_points(grid, fixed, moving, network_flow, refined, info, settings, pairs, radius=None, on_step=None):
    """``(flow [*S, N], report)``: ``refined`` (the refinement's flow without points, working voxels) with the
    pairs' neighbourhood refined again (module docstring).

    grid: the :class:`~DIRVNetLib.registration.geometry.WorkingGrid`; fixed, moving: the normalised working
    arrays ``[*S]``; network_flow: the flow the refinement started from; info: its report (the similarity
    it chose is kept); settings: its :class:`~DIRVNetLib.registration.refinement.RefinementSettings`;
    pairs: (fixed points, moving points), LPS mm; radius: of the correction (None: its default rule).
    report: ``radius_mm`` (R), ``steps``, ``landmark_distance_mm_before`` / ``_after`` (per pair, mm: the
    refinement without points, the blended flow). Raises PointsError as ``correct_with_points``.
    """
    start, correction = correct_with_points(grid.flow_to_displacement(network_flow), *pairs, radius=radius)
    support = correction["radius_mm"]
    box = support_box(grid.reference, pairs[0], support)
    near_grid = grid.reference[tuple(reversed(box))]  # SimpleITK slices in (x, y, z) order; keeps the geometry
    near, near_info = refine_flow(
        fixed[box],
        moving[box],
        grid.displacement_to_flow(start)[box],
        dataclasses.replace(settings, similarity=info["similarity"]),
        Landmarks.on_grid(near_grid, *pairs),
        on_step=on_step,
    )
    flow = refined.copy()
    flow[box] += support_weight(near_grid, pairs[0], support)[..., None].astype(flow.dtype) * (near - refined[box])
    landmarks = Landmarks.on_grid(grid.reference, *pairs)
    report = {
        "radius_mm": support,
        "steps": near_info["steps"],
        "landmark_distance_mm_before": landmarks.distances_mm(refined).tolist(),
        "landmark_distance_mm_after": landmarks.distances_mm(flow).tolist(),
    }
    return flow, report
