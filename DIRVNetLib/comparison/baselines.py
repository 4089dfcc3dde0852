"""Registration methods compared by ``dirvnet benchmark``: DIRV-Net and one small adapter per tool.

Every adapter has ``name``, ``label``, ``package`` (what ``pip install DIRVNet[benchmark]`` brings),
``settings`` (the parameters used, for the report), ``available() -> (bool, reason)`` and
``register(fixed, moving) -> displacement``: a SimpleITK vector image (float64) on the fixed grid in
LPS mm, pull convention ``warped(p) = moving(p + u(p))`` (docs/architecture.md), whatever the tool's own
convention. ``stages`` holds the seconds of the last call split by stage. The tools run at their
documented default settings for deformable-only registration (the inputs are already pre-aligned).
"""

import importlib
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from DIRVNetLib.io.resample import resample_like


def _import(module):
    """``(module or None, reason)``."""
    try:
        return importlib.import_module(module), ""
    except Exception as e:  # ImportError, or a broken binary wheel
        return None, f"{module} is not importable ({type(e).__name__}: {e}); pip install 'DIRVNet[benchmark]'"


class Method:
    name = ""
    label = ""
    package = ""
    settings = ""
    needs_warmup = False  # a first call pays one-off costs (graph tracing, model loading)

    def __init__(self):
        self.stages = {}

    def available(self, dimension=None):
        return True, ""

    def register(self, fixed, moving):
        raise NotImplementedError

    def _timed(self, stage, function, *args, **kwargs):
        started = time.perf_counter()
        value = function(*args, **kwargs)
        self.stages[stage] = self.stages.get(stage, 0.0) + time.perf_counter() - started
        return value


def _vector_on(array, reference):
    """A float64 vector image from ``array`` [*numpy shape, dim] (components x, y[, z]) on ``reference``'s grid."""
    field = sitk.GetImageFromArray(np.asarray(array, np.float64), isVector=True)
    field.CopyInformation(reference)
    return field


class DIRVNetMethod(Method):
    """DIRV-Net through the public :func:`DIRVNetLib.registration.api.register`, each network pass as one
    graph (``whole_graph``: the benchmark times repeated calls of one size after a warm-up call)."""

    name = "dirvnet"
    label = "DIRV-Net"
    package = "DIRVNet"
    needs_warmup = True

    def __init__(
        self,
        weights=None,
        device="auto",
        refinement_rounds=0,
        coarse_pass=None,
        working_spacing=None,
        mode="accurate",
        refine_steps=None,
        refinement_spacing=None,
    ):
        super().__init__()
        self.mode, self.refine_steps, self.refinement_spacing = mode, refine_steps, refinement_spacing
        self.weights = dict(weights or {})  # {dimension: weight-set folder or name}; default: bundled
        self.device = device
        self.refinement_rounds = refinement_rounds
        self.coarse_pass = coarse_pass
        self.working_spacing = working_spacing  # mm; None: register's default grid
        weights_text = "bundled weights (mr2d / mr3d)"
        if self.weights:
            weights_text = "weights " + ", ".join(f"{d}D: {w}" for d, w in sorted(self.weights.items()))
        self.settings = (
            f"{weights_text}, mode {mode}, up to {refinement_rounds} refinement rounds, whole-graph passes"
            + (f", up to {refine_steps} refinement steps" if refine_steps is not None else "")
        )
        if mode != "accurate":
            self.name = f"dirvnet-{mode}"
        labels = [mode] + ([f"{refinement_rounds} rounds"] if refinement_rounds else [])
        if refine_steps is not None:
            labels.append(f"{refine_steps} steps")
        if coarse_pass is not None:
            self.settings += f", a first pass on a grid {coarse_pass:g}x coarser"
            labels.append(f"coarse pass {coarse_pass:g}")
        if working_spacing is not None:
            self.settings += f", on an isotropic {working_spacing:g} mm working grid"
            labels.append(f"{working_spacing:g} mm grid")
        if refinement_spacing is not None:
            self.settings += f", refinement on an isotropic {refinement_spacing:g} mm grid"
            labels.append(f"refinement at {refinement_spacing:g} mm")
        self.label = "DIRV-Net, " + ", ".join(labels)

    def available(self, dimension=None):
        from DIRVNetLib.errors import WeightSetError
        from DIRVNetLib.io.weights import load_weight_set, resolve

        for d in [dimension] if dimension else [2, 3]:
            try:
                load_weight_set(resolve(self.weights.get(d), d))
            except (WeightSetError, OSError, ValueError) as e:
                return False, f"no usable {d}D weight set: {e}"
        return True, ""

    def register(self, fixed, moving):
        from DIRVNetLib.registration.api import register

        result = register(
            fixed,
            moving,
            weights=self.weights.get(fixed.GetDimension()),
            device=self.device,
            refinement_rounds=self.refinement_rounds,
            whole_graph=True,
            coarse_pass=self.coarse_pass,
            working_spacing=self.working_spacing,
            mode=self.mode,
            refine_steps=self.refine_steps,
            refinement_spacing=self.refinement_spacing,
        )
        self.stages = {k: v for k, v in result.report["seconds"].items() if k != "total"}
        self.weights_used = result.report["weights"]
        self.refinement_rounds_used = result.report["refinement_rounds_used"]
        self.working_grid = result.report["working_grid"]
        self.refinement_grid = result.report["refinement_grid"]
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        self.device_used = f"GPU ({gpus[0].name})" if gpus and self.device != "cpu" else "CPU"
        return result.displacement


class DemonsMethod(Method):
    """SimpleITK diffeomorphic demons on a multi-resolution pyramid, as in SimpleITK's demons
    registration notebook: shrink factors 4, 2, 1 with Gaussian smoothing sigmas 8, 4, 0 (physical),
    20 iterations per level, displacement-field smoothing with standard deviation 2.0. Histogram
    matching of the moving image to the fixed one first (SimpleITK DemonsRegistration2 example),
    since demons assumes equal intensities."""

    name = "demons"
    label = "SimpleITK demons"
    package = "SimpleITK"
    settings = "DiffeomorphicDemons, shrink 4,2,1, sigmas 8,4,0 mm, 20 it/level, field sigma 2.0, histogram matching"
    shrink_factors = (4, 2)
    smoothing_sigmas = (8.0, 4.0)
    iterations = 20
    standard_deviations = 2.0

    @staticmethod
    def _smooth_and_resample(image, shrink, sigma):
        smoothed = sitk.SmoothingRecursiveGaussian(image, sigma) if sigma > 0 else image
        size = [max(2, int(n / shrink + 0.5)) for n in image.GetSize()]
        spacing = [(n - 1) * s / (m - 1) for n, s, m in zip(image.GetSize(), image.GetSpacing(), size)]
        return sitk.Resample(
            smoothed,
            size,
            sitk.Transform(),
            sitk.sitkLinear,
            image.GetOrigin(),
            spacing,
            image.GetDirection(),
            0.0,
            image.GetPixelID(),
        )

    def register(self, fixed, moving):
        self.stages = {}
        fixed = sitk.Cast(fixed, sitk.sitkFloat32)

        def prepare():
            on_fixed = resample_like(sitk.Cast(moving, sitk.sitkFloat32), fixed)
            return sitk.HistogramMatching(
                on_fixed, fixed, numberOfHistogramLevels=1024, numberOfMatchPoints=7, thresholdAtMeanIntensity=True
            )

        moving_on_fixed = self._timed("prepare", prepare)

        def run():
            demons = sitk.DiffeomorphicDemonsRegistrationFilter()
            demons.SetNumberOfIterations(self.iterations)
            demons.SetSmoothDisplacementField(True)
            demons.SetStandardDeviations(self.standard_deviations)
            levels = [
                (self._smooth_and_resample(fixed, s, g), self._smooth_and_resample(moving_on_fixed, s, g))
                for s, g in zip(self.shrink_factors, self.smoothing_sigmas)
            ] + [(fixed, moving_on_fixed)]
            coarse = levels[0][0]
            field = sitk.Image(coarse.GetSize(), sitk.sitkVectorFloat64, coarse.GetDimension())
            field.CopyInformation(coarse)
            for f, m in levels:
                field = sitk.Resample(field, f, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkVectorFloat64)
                field = demons.Execute(f, m, field)
            return field

        field = self._timed("register", run)
        # ITK demons fields are physical displacements on the fixed grid used as warped(p) = moving(p + u(p)).
        return self._timed("convert", lambda: sitk.Cast(field, sitk.sitkVectorFloat64))


class _TempDirMethod(Method):
    def _tempdir(self):
        return tempfile.TemporaryDirectory(prefix=f"dirvnet-{self.name}-")


class GreedyMethod(Method):
    """greedy (PICSL, PyPI ``picsl_greedy``) deformable registration as in its documentation's
    deformable example: ``-m NCC 2x2x2 -n 100x50x10``; everything else at greedy's defaults
    (smoothing 1.732vox 0.7071vox, step 1.0). greedy's warps are ITK displacement fields in physical
    LPS mm mapping fixed to moving points, i.e. already in the pull convention."""

    name = "greedy"
    label = "greedy"
    package = "picsl_greedy"

    @property
    def settings(self):
        return "-m NCC 2x2[x2] -n 100x50x10, defaults otherwise"

    def available(self, dimension=None):
        module, reason = _import("picsl_greedy")
        return module is not None, reason

    def register(self, fixed, moving):
        import io

        import picsl_greedy

        self.stages = {}
        dimension = fixed.GetDimension()
        greedy = picsl_greedy.Greedy3D() if dimension == 3 else picsl_greedy.Greedy2D()
        images = self._timed(
            "prepare", lambda: (sitk.Cast(fixed, sitk.sitkFloat32), sitk.Cast(moving, sitk.sitkFloat32))
        )
        radius = "x".join(["2"] * dimension)
        log = io.StringIO()
        self._timed(
            "register",
            greedy.execute,
            f"-d {dimension} -i fixed moving -m NCC {radius} -n 100x50x10 -V 0 -o warp",
            out=log,
            err=log,
            fixed=images[0],
            moving=images[1],
            warp=None,
        )
        self.log = log.getvalue()
        return self._timed("convert", lambda: _on_fixed(greedy["warp"], fixed))


def _on_fixed(field, fixed):
    from DIRVNetLib.comparison.evaluation import on_grid

    return on_grid(sitk.Cast(field, sitk.sitkVectorFloat64), fixed)


def _to_itk(image):
    import itk

    array = sitk.GetArrayFromImage(sitk.Cast(image, sitk.sitkFloat32))
    result = itk.GetImageFromArray(np.ascontiguousarray(array))
    result.SetOrigin(image.GetOrigin())
    result.SetSpacing(image.GetSpacing())
    dimension = image.GetDimension()
    result.SetDirection(itk.matrix_from_array(np.array(image.GetDirection(), np.float64).reshape(dimension, dimension)))
    return result


class ElastixMethod(Method):
    """elastix (PyPI ``itk-elastix``) with its default ``bspline`` parameter map (Mattes MI + bending
    energy, 4 resolutions, 256 iterations, final grid spacing 10 mm, adaptive stochastic gradient
    descent). transformix's deformation field is T(p) - p with T mapping fixed to moving points (ITK
    physical LPS), i.e. already in the pull convention."""

    name = "elastix"
    label = "elastix B-spline"
    package = "itk-elastix"
    settings = "default 'bspline' parameter map"

    def available(self, dimension=None):
        module, reason = _import("itk")
        if module is None:
            return False, reason
        if not hasattr(module, "elastix_registration_method"):
            return False, "itk is installed without elastix; pip install itk-elastix"
        return True, ""

    def register(self, fixed, moving):
        import itk

        self.stages = {}
        fixed_itk, moving_itk = self._timed("prepare", lambda: (_to_itk(fixed), _to_itk(moving)))

        def run():
            parameters = itk.ParameterObject.New()
            parameters.AddParameterMap(parameters.GetDefaultParameterMap("bspline"))
            parameters.SetParameter("WriteResultImage", "false")
            _, transform_parameters = itk.elastix_registration_method(
                fixed_itk, moving_itk, parameter_object=parameters, log_to_console=False
            )
            return transform_parameters

        transform_parameters = self._timed("register", run)

        def convert():
            # transformix writes deformationField.nii into its output directory (default: the working
            # directory): give it a temporary one
            with tempfile.TemporaryDirectory(prefix="dirvnet-transformix-") as tmp:
                transformix = itk.TransformixFilter.New(moving_itk)
                transformix.SetComputeDeformationField(True)
                transformix.SetTransformParameterObject(transform_parameters)
                transformix.SetOutputDirectory(tmp)
                transformix.SetLogToConsole(False)
                transformix.UpdateLargestPossibleRegion()
                field = itk.GetArrayFromImage(transformix.GetOutputDeformationField())
            return _vector_on(field, fixed)

        return self._timed("convert", convert)


class AntsMethod(_TempDirMethod):
    """ANTs SyN (PyPI ``antspyx``) with ``ants.registration(type_of_transform="SyNOnly")``: ANTsPy's
    defaults for deformable-only SyN (identity initialisation, mutual information, 40x20x0 iterations,
    flow sigma 3, total sigma 0). ANTs forward warps are ITK displacement fields in physical LPS mm
    mapping fixed to moving points: already the pull convention; several transforms are composed by
    ANTs itself."""

    name = "ants"
    label = "ANTs SyN"
    package = "antspyx"
    settings = "ants.registration(type_of_transform='SyNOnly'), defaults otherwise"

    def available(self, dimension=None):
        module, reason = _import("ants")
        return module is not None, reason

    def register(self, fixed, moving):
        import ants

        self.stages = {}
        with self._tempdir() as tmp:
            tmp = Path(tmp)

            def prepare():
                sitk.WriteImage(sitk.Cast(fixed, sitk.sitkFloat32), str(tmp / "fixed.nii.gz"))
                sitk.WriteImage(sitk.Cast(moving, sitk.sitkFloat32), str(tmp / "moving.nii.gz"))
                return ants.image_read(str(tmp / "fixed.nii.gz")), ants.image_read(str(tmp / "moving.nii.gz"))

            fixed_ants, moving_ants = self._timed("prepare", prepare)
            result = self._timed(
                "register",
                ants.registration,
                fixed_ants,
                moving_ants,
                type_of_transform="SyNOnly",
                outprefix=str(tmp / "syn_"),
            )

            def convert():
                transforms = result["fwdtransforms"]
                path = transforms[0]
                if len(transforms) > 1 or not str(path).endswith((".nii.gz", ".nii")):
                    path = ants.apply_transforms(
                        fixed_ants, moving_ants, transformlist=transforms, compose=str(tmp / "composed_")
                    )
                return _on_fixed(sitk.ReadImage(str(path)), fixed)

            return self._timed("convert", convert)


VOXELMORPH_ENV = "DIRVNET_VOXELMORPH_DIR"


class VoxelMorphMethod(Method):
    """VoxelMorph (PyPI ``voxelmorph``, PyTorch), its published ``VxmPairwise`` architecture, loaded
    from ``vxm{2,3}d.pt`` trained by :mod:`DIRVNetLib.comparison.voxelmorph_training` on the same
    synthetic data and budget as the bundled weights. Runs on DIRV-Net's working grid; its voxel
    displacement (channels in array-axis order, pull convention) is converted to LPS mm."""

    name = "voxelmorph"
    label = "VoxelMorph"
    package = "voxelmorph (PyTorch)"
    needs_warmup = True
    settings = "VxmPairwise (default U-Net 16x5 features, 5 integration steps), our synthetic training data"

    def __init__(self, model_dir=None):
        """model_dir: the folder of the trained models (default: ``$DIRVNET_VOXELMORPH_DIR``; without
        either the method is unavailable; ``dirvnet benchmark`` passes its ``--voxelmorph-dir``)."""
        super().__init__()
        folder = model_dir or os.environ.get(VOXELMORPH_ENV)
        self.model_dir = Path(folder).resolve() if folder else None
        self._models = {}

    def model_path(self, dimension):
        return self.model_dir / f"vxm{dimension}d.pt"

    def available(self, dimension=None):
        if self.model_dir is None:
            return False, f"no folder of trained VoxelMorph models given (--voxelmorph-dir or ${VOXELMORPH_ENV})"
        for module in ("torch", "voxelmorph"):
            found, reason = _import(module)
            if found is None:
                return False, reason
        missing = [d for d in ([dimension] if dimension else [2, 3]) if not self.model_path(d).is_file()]
        if missing:
            dimensions = ", ".join(f"{d}D" for d in missing)
            return False, (
                f"no VoxelMorph model trained for {dimensions} ({self.model_path(missing[0])}): "
                "training it on the same synthetic data with the same budget as the bundled weights "
                "was not done on this machine (2D: 10 min; 3D: hours on a 2-core CPU; see benchmarks/README.md)"
            )
        return True, ""

    def _model(self, dimension):
        if dimension not in self._models:
            from DIRVNetLib.comparison.voxelmorph_training import load_model

            self._models[dimension] = load_model(self.model_path(dimension))
        return self._models[dimension]

    def register(self, fixed, moving):
        import torch

        from DIRVNetLib.comparison.voxelmorph_training import pad_to, vxm_to_flow
        from DIRVNetLib.preprocessing import normalise_intensity
        from DIRVNetLib.registration.geometry import WorkingGrid, resample_displacement

        self.stages = {}
        model, multiple = self._timed("load", self._model, fixed.GetDimension())

        def prepare():
            grid = WorkingGrid.for_fixed(fixed)
            f = normalise_intensity(sitk.GetArrayFromImage(resample_like(fixed, grid.reference)))
            m = normalise_intensity(sitk.GetArrayFromImage(resample_like(moving, grid.reference)))
            return grid, pad_to(f, multiple), pad_to(m, multiple)

        grid, (f, crop), (m, _) = self._timed("preprocess", prepare)

        def run():
            with torch.no_grad():
                disp = model(torch.from_numpy(m)[None, None], torch.from_numpy(f)[None, None])
            return vxm_to_flow(disp[0].numpy())[crop]

        flow = self._timed("network", run)
        return self._timed("postprocess", lambda: resample_displacement(grid.flow_to_displacement(flow), fixed))


BASELINES = {cls.name: cls for cls in (DemonsMethod, GreedyMethod, ElastixMethod, AntsMethod, VoxelMorphMethod)}
METHODS = ("dirvnet", "dirvnet-fast", *BASELINES)


def make(name, **options):
    """The method called ``name`` (one of :data:`METHODS`); ``options``: ``weights`` (dict dimension ->
    weight set), ``device``, ``refinement_rounds``, ``coarse_pass``, ``working_spacing``, ``refine_steps``
    and ``refinement_spacing`` for DIRV-Net (``dirvnet``: its default mode, accurate; ``dirvnet-fast``: the
    network alone), ``voxelmorph_dir`` for VoxelMorph."""
    if name in ("dirvnet", "dirvnet-fast"):
        return DIRVNetMethod(
            options.get("weights"),
            options.get("device", "auto"),
            options.get("refinement_rounds", 0),
            options.get("coarse_pass"),
            options.get("working_spacing"),
            "fast" if name == "dirvnet-fast" else "accurate",
            options.get("refine_steps"),
            options.get("refinement_spacing"),
        )
    if name == "voxelmorph":
        return VoxelMorphMethod(options.get("voxelmorph_dir"))
    if name not in BASELINES:
        raise ValueError(f"unknown method '{name}'; choose from {', '.join(METHODS)}")
    return BASELINES[name]()
