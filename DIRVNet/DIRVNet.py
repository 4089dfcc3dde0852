"""DIRVNet: deep-learning deformable registration of MR volumes (DIRV-Net) as a 3D Slicer module.

Module (title, help, sample data), parameter node, Widget (panel, registration in a worker process, QA
views), Logic (console entry point; delegates to DIRVNetLib.mrml) and Test (self-test on the sample pair).
Needs Slicer 5.10 or later (Python 3.12). TensorFlow is never imported in Slicer's process: registrations
run in a worker process (DIRVNetLib.mrml.background).

Console use (blocks, returns the grid transform node)::

    import DIRVNet
    transform = DIRVNet.DIRVNetLogic().register(fixedVolumeNode, movingVolumeNode, placeMovingUnderTransform=True)

The result is a grid transform (TransformFromParent, RAS) on the fixed grid: a volume placed under it
is displayed as moving(p + u(p)), aligned to the fixed volume.
"""

import enum
import logging
import sys
import time
import traceback
from pathlib import Path
from typing import Annotated, Optional

MINIMUM_PYTHON = (3, 12)
if sys.version_info < MINIMUM_PYTHON:
    raise ImportError(
        f"DIRVNet needs 3D Slicer 5.10 or later (Python {MINIMUM_PYTHON[0]}.{MINIMUM_PYTHON[1]}); this Slicer runs "
        f"Python {sys.version_info[0]}.{sys.version_info[1]}. Install a newer Slicer to use DIRVNet."
    )

import qt
import slicer
import vtk
from slicer import vtkMRMLGridTransformNode, vtkMRMLMarkupsFiducialNode, vtkMRMLScalarVolumeNode
from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin


def _addLibraryToPath():
    """Make DIRVNetLib importable: installed it sits next to this file, in the source tree one folder up."""
    here = Path(__file__).resolve().parent
    for folder in (here, here.parent):
        if (folder / "DIRVNetLib").is_dir():
            if str(folder) not in sys.path:
                sys.path.insert(0, str(folder))
            return


_addLibraryToPath()

SAMPLE_FILES = ("sample_fixed.nii.gz", "KmeansTest_T1UCharRaw.nii.gz")
"""The demo pair (fixed, moving): a smoothly deformed copy of a real T1 head MR (at most 8 mm, see
Testing/Data/make_sample_pair.py), and that T1."""
SAMPLE_NODE_NAMES = ("DIRVNet fixed T1", "DIRVNet moving T1")
SAMPLE_NAME = "DIRVNet T1 pair"


def sampleDataPaths():
    """Paths of the demo pair: installed next to the module (DIRVNetSampleData/), or Testing/Data in a checkout."""
    here = Path(__file__).resolve().parent
    for folder in (here / "DIRVNetSampleData", here.parent / "Testing" / "Data"):
        paths = [folder / name for name in SAMPLE_FILES]
        if all(path.is_file() for path in paths):
            return paths
    return None


#
# DIRVNet
#


class DIRVNet(ScriptedLoadableModule):
    """Module description shown by Slicer."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "DIRVNet"
        self.parent.categories = ["Registration"]
        self.parent.dependencies = []
        self.parent.contributors = ["DIRVNet developers"]
        self.parent.helpText = """
Deformable registration of MR volumes with DIRV-Net, a variational network that refines a displacement
field level by level. Choose a fixed and a moving volume and press Apply: the result is a grid transform
that shows the moving volume aligned to the fixed one. Optional outputs: the warped volume, the Jacobian
determinant of the deformation, and the intermediate fields of every level and unit.
The first Apply offers to install TensorFlow into Slicer's Python. Registrations run in a separate
process; while one runs, Apply becomes Cancel. Needs Slicer 5.10 or later.
"""
        self.parent.acknowledgementText = """
DIRV-Net: Jia, Thorley, Chen, Qiu, Shen, Duan, "Learning a model-driven variational network for deformable
image registration", IEEE TMI 2022. Sample T1 volume from the Insight Toolkit examples (Apache-2.0).
"""
        slicer.app.connect("startupCompleted()", registerSampleData)


def registerSampleData():
    """Add the demo pair to the Sample Data module (files installed with the extension, no download)."""
    import SampleData

    paths = sampleDataPaths()
    if paths is None:
        logging.info("DIRVNet: sample pair not found next to the module; not registered with Sample Data")
        return
    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category="DIRVNet",
        sampleName=SAMPLE_NAME,
        thumbnailFileName=str(Path(__file__).resolve().parent / "Resources" / "Icons" / "DIRVNetSample.png"),
        uris=[path.as_uri() for path in paths],
        fileNames=[f"DIRVNet_{path.name}" for path in paths],
        nodeNames=list(SAMPLE_NODE_NAMES),
        loadFileType="VolumeFile",
    )


#
# DIRVNetParameterNode
#


class Device(enum.Enum):
    """Where TensorFlow runs the network."""

    AUTO = "auto"
    CPU = "cpu"
    GPU = "gpu"

    def label(self):
        return {"auto": "Automatic", "cpu": "CPU", "gpu": "GPU"}[self.value]


class Mode(enum.Enum):
    """Trade-off between time and accuracy (``mode=`` of DIRVNetLib.register)."""

    ACCURATE = "accurate"
    FAST = "fast"

    def label(self):
        return {"accurate": "Accurate (network, then refinement)", "fast": "Fast (network alone)"}[self.value]


@parameterNodeWrapper
class DIRVNetParameterNode:
    """Panel state, saved with the scene.

    fixedVolume, movingVolume: the volumes to register (moving is deformed onto fixed).
    weightSet: bundled weight set name; "" = the bundled default for the volumes' dimension.
    useWeightFolder, weightFolder: use the weight set in this folder instead.
    device: where the network runs.
    mode: accurate (the network, then test-time refinement) or fast (the network alone).
    refinementRounds: recurrent refinement rounds, each registering the warped moving volume again and
        composing the fields while the residual falls (0 = a single pass).
    workingSpacing: isotropic voxel size (mm) the network works on; 0 = automatic.
    coarsePass: register first on a grid this many times coarser (large displacements); 1 = off, 0 = the mode's.
    outputTransform: grid transform to fill; None = create a new one at every Apply.
    outputVolume, jacobianVolume: optional warped volume and Jacobian determinant volume.
    keepIntermediate: keep one field per level and unit (a Sequence) to replay the registration.
    placeMovingUnderTransform: show the moving volume under the result.
    fixedPoints, movingPoints: optional markups point lists whose i-th points correspond; used by Apply when
        both are set, and by "Refine with points" on an existing result.
    """

    fixedVolume: vtkMRMLScalarVolumeNode
    movingVolume: vtkMRMLScalarVolumeNode
    weightSet: str = ""
    useWeightFolder: bool = False
    weightFolder: Path
    device: Device = Device.AUTO
    mode: Mode = Mode.ACCURATE
    refinementRounds: Annotated[int, WithinRange(0, 5)] = 0
    workingSpacing: Annotated[float, WithinRange(0.0, 10.0)] = 0.0
    coarsePass: Annotated[float, WithinRange(0.0, 4.0)] = 0.0
    # typing.Optional, not "X | None" (noqa UP045): the parameter node wrapper recognises only typing.Union.
    outputTransform: Optional[vtkMRMLGridTransformNode]  # noqa: UP045
    outputVolume: Optional[vtkMRMLScalarVolumeNode]  # noqa: UP045
    jacobianVolume: Optional[vtkMRMLScalarVolumeNode]  # noqa: UP045
    keepIntermediate: bool = False
    placeMovingUnderTransform: bool = True
    fixedPoints: Optional[vtkMRMLMarkupsFiducialNode]  # noqa: UP045
    movingPoints: Optional[vtkMRMLMarkupsFiducialNode]  # noqa: UP045


#
# DIRVNetWidget
#


class DIRVNetWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel: inputs, model, options, outputs, Apply/Cancel with progress, and the registration steps."""

    POLL_INTERVAL_MS = 100

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._run = None  # the BackgroundRegistration in the worker process, while one runs
        self._installing = False
        self._stepsTransform = None
        self._resultTransform = None  # the last result, for the result display section
        self._pollTimer = None

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/DIRVNet.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = DIRVNetLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.weightSetComboBox.connect("currentIndexChanged(int)", self.onWeightSetSelected)
        self.ui.stepSlider.connect("valueChanged(double)", self.onStepChanged)
        self.ui.refineWithPointsButton.connect("clicked(bool)", self.onRefineWithPointsButton)
        self.ui.afterCheckBox.connect("toggled(bool)", self.onAfterToggled)
        self.ui.jacobianCheckBox.connect("toggled(bool)", self.onJacobianToggled)
        self.ui.gridCheckBox.connect("toggled(bool)", self.onGridToggled)
        self.ui.progressBar.hide()
        self.ui.stepsCollapsibleButton.enabled = False
        self.ui.displayCollapsibleButton.enabled = False

        self._pollTimer = qt.QTimer()
        self._pollTimer.setInterval(self.POLL_INTERVAL_MS)
        self._pollTimer.connect("timeout()", self._pollRun)

        self._populateWeightSets()
        self.ui.deviceInfoLabel.text = self.logic.deviceDescription()
        self.ui.installInfoLabel.text = self.logic.installationPlan().panel_text()
        self.initializeParameterNode()

    def cleanup(self):
        self._cancelRun()
        DIRVNetLogic.worker().close()
        self.removeObservers()

    def enter(self):
        self.initializeParameterNode()

    def exit(self):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)

    def onSceneStartClose(self, caller, event):
        self._cancelRun()
        self._stepsTransform = None
        self._showDisplayControls(None)
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    # Parameter node

    def initializeParameterNode(self):
        """Use the scene's parameter node; pick the first two volumes when nothing is selected yet."""
        self.setParameterNode(self.logic.getParameterNode())
        volumes = [
            node
            for node in slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode")
            if not node.IsA("vtkMRMLLabelMapVolumeNode")
        ]
        if not self._parameterNode.fixedVolume and volumes:
            self._parameterNode.fixedVolume = volumes[0]
        if not self._parameterNode.movingVolume and len(volumes) > 1:
            self._parameterNode.movingVolume = volumes[1]

    def setParameterNode(self, inputParameterNode):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
        self._onParameterNodeModified()

    def _onParameterNodeModified(self, caller=None, event=None):
        """Update what connectGui does not cover: the weight set list, enabled states, Apply's tooltip."""
        if self._parameterNode is None:
            self.ui.applyButton.enabled = False
            self.ui.refineWithPointsButton.enabled = False
            return
        index = self.ui.weightSetComboBox.findData(self._parameterNode.weightSet)
        wasBlocked = self.ui.weightSetComboBox.blockSignals(True)
        self.ui.weightSetComboBox.currentIndex = max(index, 0)
        self.ui.weightSetComboBox.blockSignals(wasBlocked)
        useFolder = self._parameterNode.useWeightFolder
        self.ui.weightFolderPathLineEdit.enabled = useFolder
        self.ui.weightSetComboBox.enabled = not useFolder
        self._describeWeightSet()
        self._checkCanApply()
        self._checkCanRefine()

    def _checkCanApply(self):
        """Enable Apply when the inputs allow a run, with the reason in the tooltip when they do not."""
        if self._run is not None:
            return
        p = self._parameterNode
        reason = None
        if p is None:
            reason = "No parameter node (the scene is closing)."
        elif self._installing:
            reason = "Installing Python packages: wait until pip has finished."
        elif not p.fixedVolume or not p.movingVolume:
            reason = "Select a fixed and a moving volume."
        elif p.fixedVolume == p.movingVolume:
            reason = "The fixed and moving volumes must be different volumes."
        elif p.useWeightFolder and not self._weightFolder():
            reason = "Choose the weight folder, or use a bundled weight set."
        self.ui.applyButton.enabled = reason is None
        self.ui.applyButton.toolTip = reason or "Register the moving volume to the fixed volume."

    def _weightFolder(self):
        folder = str(self._parameterNode.weightFolder) if self._parameterNode.weightFolder else ""
        return "" if folder in ("", ".") else folder

    def _populateWeightSets(self):
        from DIRVNetLib.mrml import weightsets

        combo = self.ui.weightSetComboBox
        wasBlocked = combo.blockSignals(True)
        combo.clear()
        combo.addItem("Default for the volumes' dimension", "")
        for info in weightsets.bundled():
            combo.addItem(f"{info.name} ({info.dimension}D)", info.name)
        combo.blockSignals(wasBlocked)

    def _describeWeightSet(self):
        from DIRVNetLib.mrml import weightsets

        name = self.ui.weightSetComboBox.itemData(self.ui.weightSetComboBox.currentIndex)
        if self._parameterNode.useWeightFolder:
            text = "Weights from the folder below."
        elif not name:
            text = (
                "; ".join(f"{info.dimension}D: {info.description}" for info in weightsets.bundled())
                or "No bundled weight set found: use a weight folder."
            )
        else:
            info = next((i for i in weightsets.bundled() if i.name == name), None)
            text = f"{info.dimension}D. {info.description}" if info else ""
        self.ui.weightSetDescriptionLabel.text = text

    def onWeightSetSelected(self, index):
        if self._parameterNode is not None:
            self._parameterNode.weightSet = self.ui.weightSetComboBox.itemData(index) or ""

    # Running

    def onApplyButton(self):
        """Apply starts a registration in the worker process; while it runs the same button cancels it."""
        if self._run is not None:
            self._cancelRun()
            return
        if self._installing:
            return
        p = self._parameterNode
        if bool(p.fixedPoints) != bool(p.movingPoints):
            missing = "moving" if p.fixedPoints else "fixed"
            self.ui.statusLabel.text = (
                f"Point pairs: choose the {missing} point list too, or set both to None to "
                f"register without points. Nothing was started."
            )
            return
        try:
            if not self._ensureDependencies():
                return
            with slicer.util.WaitCursor():
                job = self.logic.prepare(**self.logic.registrationArguments(self._parameterNode))
                self._run = self.logic.worker().submit(job)
        except Exception as e:  # any failure to start is shown as one message; details go to the log
            self._showError("DIRVNet could not start the registration.", e, traceback.format_exc())
            return
        self._setRunningState(True)
        self._pollTimer.start()

    def _ensureDependencies(self):
        """Ask once (exact packages, approximate size) and install what is missing; False if not installed.

        Apply stays disabled while pip runs. TensorFlow is only imported by the worker process, so no
        restart of Slicer is needed after installing it.
        """
        plan = self.logic.installationPlan()
        if not plan.needed:
            return True
        if not slicer.util.confirmOkCancelDisplay(
            plan.summary() + "\n\nInstall now?", "DIRVNet - install Python packages"
        ):
            self.ui.statusLabel.text = "DIRVNet needs TensorFlow: press Apply again to install it."
            return False
        self._installing = True
        self._checkCanApply()
        self.ui.statusLabel.text = "Installing Python packages (see the progress window)..."
        slicer.app.processEvents()
        try:
            self.logic.installDependencies(plan)
        finally:
            self._installing = False
            self._checkCanApply()
        self.ui.installInfoLabel.text = self.logic.installationPlan().panel_text()
        return True

    def _cancelRun(self):
        """End the worker's current registration (the scene stays as it was); nothing when none runs."""
        if self._pollTimer is not None:
            self._pollTimer.stop()
        if self._run is None:
            return
        self._run = None
        self.logic.worker().cancel()
        self._setRunningState(False)
        self._checkCanApply()
        self.ui.statusLabel.text = "Cancelled: the scene is unchanged."

    def _setRunningState(self, running):
        for section in (
            "inputsCollapsibleButton",
            "modelCollapsibleButton",
            "optionsCollapsibleButton",
            "pointsCollapsibleButton",
            "outputsCollapsibleButton",
            "stepsCollapsibleButton",
        ):
            getattr(self.ui, section).enabled = not running
        self.ui.displayCollapsibleButton.enabled = not running and self._resultTransform is not None
        self.ui.applyButton.text = "Cancel" if running else "Apply"
        self.ui.applyButton.enabled = True
        self.ui.applyButton.toolTip = "Stop the registration; the scene stays as it was." if running else ""
        self.ui.progressBar.setVisible(running)
        if running:
            self.ui.progressBar.value = 0
            self.ui.progressBar.format = "Starting... %p%"
            self.ui.statusLabel.text = (
                "Registering (the first run starts TensorFlow in a worker process)..."
                if self.logic.worker().info is None
                else "Registering..."
            )

    def _pollRun(self):
        """Read the worker's progress; when it has finished, write the result on the main thread or say why not."""
        run = self._run
        if run is None:
            self._pollTimer.stop()
            return
        self.logic.worker().poll()
        info = run.progress
        if info is not None and info.total:
            self.ui.progressBar.value = int(100 * info.done / info.total)
            self.ui.progressBar.format = f"Level {info.level}, unit {info.unit}: %p%"
            self.ui.statusLabel.text = f"{info.stage} ({time.monotonic() - run.started:.0f} s)"
        if not run.finished:
            return
        self._pollTimer.stop()
        self._run = None
        self._setRunningState(False)
        self._checkCanApply()
        self.ui.deviceInfoLabel.text = self.logic.deviceDescription()
        if run.state == "cancelled":
            self.ui.statusLabel.text = "Cancelled: the scene is unchanged."
            return
        if run.state == "failed":
            self._showError("The registration failed.", run.error, run.details)
            return
        try:
            transformNode = run.job.apply(run.result)
        except Exception as e:  # a failure while writing the outputs; apply() already removed its nodes
            self._showError("The result could not be added to the scene.", e, traceback.format_exc())
            return
        self._showResult(run.job, transformNode, run.result.report, time.monotonic() - run.started)

    def _showError(self, message, error, details):
        logging.error("%s\n%s", message, details)
        self.ui.statusLabel.text = f"{message} {error}"
        slicer.util.errorDisplay(f"{message}\n\n{error}", detailedText=details)

    def _showResult(self, job, transformNode, report, seconds):
        """Status line (time, then the report's summary: similarity, Jacobian, point correction, warnings) and
        views: fixed behind, aligned moving (display.show_result) or the warped volume in front."""
        from DIRVNetLib.errors import DIRVNetError
        from DIRVNetLib.mrml import display

        status = f"Done in {seconds:.1f} s: '{transformNode.GetName()}'."
        try:
            status += "\n" + display.report_summary(transformNode)
            if job.outputVolumeNode is None and job.placeMovingUnderTransform:
                display.show_result(transformNode)
                slicer.util.setSliceViewerLayers(fit=True)
            else:  # the warped volume in front (show_result shows the moving volume), or the fixed one alone
                slicer.util.setSliceViewerLayers(
                    background=job.fixedVolumeNode,
                    foreground=job.outputVolumeNode,
                    foregroundOpacity=display.FOREGROUND_OPACITY,
                    fit=True,
                )
        except DIRVNetError as e:  # the result is in the scene; only showing it failed
            status += f"\n{e}"
        self.ui.statusLabel.text = status
        self._showSteps(transformNode)
        self._showDisplayControls(transformNode)
        self._checkCanRefine()

    # Point pairs

    def _refineTarget(self):
        """The transform "Refine with points" corrects: the selected output transform, else the last result;
        None unless it holds a DIRVNet report."""
        from DIRVNetLib.mrml import REPORT_ATTRIBUTE

        for node in (self._parameterNode.outputTransform if self._parameterNode else None, self._resultTransform):
            if node is not None and node.GetScene() is not None:
                return node if node.GetAttribute(REPORT_ATTRIBUTE) else None
        return None

    def _checkCanRefine(self):
        """Enable "Refine with points" for a DIRVNet result and both point lists, with the reason when not."""
        p = self._parameterNode
        reason = None
        if p is None:
            reason = "No parameter node (the scene is closing)."
        elif self._refineTarget() is None:
            reason = "Needs a DIRVNet result: press Apply, or select a DIRVNet transform as the output transform."
        elif not p.fixedPoints or not p.movingPoints:
            reason = "Select a fixed and a moving point list (the i-th points correspond)."
        self.ui.refineWithPointsButton.enabled = reason is None
        self.ui.refineWithPointsButton.toolTip = reason or (
            "Correct the result so that each fixed point maps to its moving point (no network run)."
        )

    def onRefineWithPointsButton(self):
        """Correct the current result with the point pairs (main thread, no TensorFlow); the summary in the status."""
        from DIRVNetLib import mrml
        from DIRVNetLib.mrml import display

        transformNode = self._refineTarget()
        p = self._parameterNode
        if transformNode is None or not p.fixedPoints or not p.movingPoints:
            return
        try:
            with slicer.util.WaitCursor():
                mrml.refine_with_points(transformNode, p.fixedPoints, p.movingPoints)
        except Exception as e:  # PointsError, InputImageError...: one message, details in the log; nothing changed
            self._showError("Refine with points failed.", e, traceback.format_exc())
            return
        self.ui.statusLabel.text = (
            f"Refined '{transformNode.GetName()}' with points.\n{display.report_summary(transformNode)}"
        )

    # Result display

    def _showDisplayControls(self, transformNode):
        """Point the result display section at ``transformNode`` (None: disable it); checkboxes show its state."""
        from DIRVNetLib.mrml import JACOBIAN_VOLUME_ROLE, MOVING_VOLUME_ROLE

        self._resultTransform = transformNode
        self.ui.displayCollapsibleButton.enabled = transformNode is not None
        moving = transformNode.GetNodeReference(MOVING_VOLUME_ROLE) if transformNode is not None else None
        states = (
            (self.ui.afterCheckBox, moving is not None and moving.GetParentTransformNode() is transformNode),
            (self.ui.jacobianCheckBox, False),
            (self.ui.gridCheckBox, False),
        )
        for checkBox, checked in states:
            wasBlocked = checkBox.blockSignals(True)
            checkBox.checked = checked
            checkBox.blockSignals(wasBlocked)
        hasJacobian = transformNode is not None and transformNode.GetNodeReference(JACOBIAN_VOLUME_ROLE) is not None
        self.ui.jacobianCheckBox.enabled = hasJacobian
        self.ui.jacobianCheckBox.toolTip = (
            "Show the Jacobian determinant volume over the fixed volume, with its colour legend."
            if hasJacobian
            else "This result has no Jacobian volume: choose one in Outputs before Apply."
        )

    def _displayResult(self, checkBox, checked, show, **kwargs):
        """Run ``show(result, **kwargs)``; on an error say why in the status line and undo the checkbox."""
        from DIRVNetLib.errors import DIRVNetError

        transformNode = self._resultTransform
        if transformNode is None or transformNode.GetScene() is None:
            self._showDisplayControls(None)
            return False
        try:
            show(transformNode, **kwargs)
        except DIRVNetError as e:
            self.ui.statusLabel.text = str(e)
            wasBlocked = checkBox.blockSignals(True)
            checkBox.checked = not checked
            checkBox.blockSignals(wasBlocked)
            return False
        return True

    def onAfterToggled(self, checked):
        from DIRVNetLib.mrml import display

        self._displayResult(self.ui.afterCheckBox, checked, display.show_before_after, after=checked)

    def onJacobianToggled(self, checked):
        from DIRVNetLib.mrml import display

        if self._displayResult(self.ui.jacobianCheckBox, checked, display.show_jacobian, show=checked) and not checked:
            # hiding the Jacobian shows the result again (display.show_result), with the moving volume registered
            wasBlocked = self.ui.afterCheckBox.blockSignals(True)
            self.ui.afterCheckBox.checked = True
            self.ui.afterCheckBox.blockSignals(wasBlocked)

    def onGridToggled(self, checked):
        from DIRVNetLib.mrml import display

        self._displayResult(self.ui.gridCheckBox, checked, display.show_deformation_grid, show=checked)

    # Registration steps

    def _showSteps(self, transformNode):
        """Let the slider replay the intermediate fields of ``transformNode`` (last position: final result)."""
        from DIRVNetLib.mrml import INTERMEDIATE_BROWSER_ROLE, INTERMEDIATE_SEQUENCE_ROLE

        sequence = transformNode.GetNodeReference(INTERMEDIATE_SEQUENCE_ROLE)
        self._stepsTransform = transformNode if sequence is not None else None
        self.ui.stepsCollapsibleButton.enabled = sequence is not None
        if sequence is None:
            return
        steps = sequence.GetNumberOfDataNodes()
        wasBlocked = self.ui.stepSlider.blockSignals(True)
        self.ui.stepSlider.minimum = 1
        self.ui.stepSlider.maximum = steps + 1
        self.ui.stepSlider.value = steps + 1
        self.ui.stepSlider.blockSignals(wasBlocked)
        self.ui.stepLabel.text = "Final result (move the slider to replay the levels and units)."
        slicer.modules.sequences.showSequenceBrowser(transformNode.GetNodeReference(INTERMEDIATE_BROWSER_ROLE))

    def onStepChanged(self, value):
        """Put the moving volume under the field of step ``value`` (1-based), or the final result after the last."""
        from DIRVNetLib.mrml import INTERMEDIATE_BROWSER_ROLE, INTERMEDIATE_SEQUENCE_ROLE, MOVING_VOLUME_ROLE

        transformNode = self._stepsTransform
        if transformNode is None or transformNode.GetScene() is None:
            return
        moving = transformNode.GetNodeReference(MOVING_VOLUME_ROLE)
        sequence = transformNode.GetNodeReference(INTERMEDIATE_SEQUENCE_ROLE)
        browser = transformNode.GetNodeReference(INTERMEDIATE_BROWSER_ROLE)
        if moving is None or sequence is None or browser is None:
            return
        step = int(round(value))
        if step > sequence.GetNumberOfDataNodes():
            moving.SetAndObserveTransformNodeID(transformNode.GetID())
            self.ui.stepLabel.text = "Final result."
            return
        browser.SetSelectedItemNumber(step - 1)
        moving.SetAndObserveTransformNodeID(browser.GetProxyNode(sequence).GetID())
        self.ui.stepLabel.text = (
            f"Step {step} of {sequence.GetNumberOfDataNodes()}: {sequence.GetNthDataNode(step - 1).GetName()}."
        )


#
# DIRVNetLogic
#


class DIRVNetLogic(ScriptedLoadableModuleLogic):
    """Registration without the panel: the Python-console entry point. Delegates to DIRVNetLib.mrml."""

    def getParameterNode(self):
        return DIRVNetParameterNode(super().getParameterNode())

    @staticmethod
    def requirementsPath():
        return Path(__file__).resolve().parent / "Resources" / "requirements.txt"

    def installationPlan(self):
        """What must still be installed (see DIRVNetLib.mrml.dependencies); ``.needed`` is False when nothing."""
        from DIRVNetLib.mrml import dependencies

        return dependencies.plan(dependencies.read_requirements(self.requirementsPath()))

    def installDependencies(self, plan=None):
        """Install the missing packages into Slicer's Python with pip (Slicer shows the progress).

        Slicer's numpy and SimpleITK are pinned by a constraints file, so pip never changes them. Slicer 5.12
        and later install through ``slicer.packaging.pip_ensure``, 5.10 through ``slicer.util.pip_install``.
        Raises RuntimeError when the packages are still missing afterwards.
        """
        import importlib

        plan = plan or self.installationPlan()
        if not plan.needed:
            return
        constraints = plan.write_constraints(Path(slicer.app.temporaryPath) / "DIRVNet-constraints.txt")
        try:
            packaging = importlib.import_module("slicer.packaging")
        except ImportError:  # Slicer 5.10
            slicer.util.pip_install(plan.requirements + ["-c", str(constraints)])
        else:
            # The user was asked already (with sizes); TensorFlow is never imported here, so no restart prompt.
            packaging.pip_ensure(
                plan.requirements,
                constraints=str(constraints),
                prompt_install=False,
                prompt_restart=False,
                requester="DIRVNet",
            )
        importlib.invalidate_caches()
        remaining = self.installationPlan()
        if remaining.needed:
            raise RuntimeError(
                f"pip finished, but {', '.join(remaining.requirements)} is still missing; see the "
                f"Python console for pip's messages."
            )

    def deviceDescription(self):
        """One line for the panel: the worker's GPUs once it has started, before that the driver's NVIDIA GPUs."""
        from DIRVNetLib.mrml.dependencies import device_description

        info = self.worker().info
        if info is None:
            return device_description()
        gpus = info.get("gpus") or []
        return (
            f"TensorFlow {info.get('tensorflow', '')} (worker process) sees {len(gpus)} GPU(s)."
            if gpus
            else f"TensorFlow {info.get('tensorflow', '')} (worker process) sees no GPU: the CPU is used."
        )

    @staticmethod
    def worker():
        """The worker process that runs registrations (shared by the panel and the console; kept warm)."""
        from DIRVNetLib.mrml.background import shared_worker

        return shared_worker()

    def registrationArguments(self, parameterNode):
        """Keyword arguments of :meth:`register` / :meth:`prepare` from the panel's parameter node."""
        p = parameterNode
        if p.useWeightFolder:
            weights = str(p.weightFolder)
        else:
            weights = p.weightSet or None
        options = {"refinement_rounds": p.refinementRounds, "mode": p.mode.value}
        if p.workingSpacing > 0:
            options["working_spacing"] = p.workingSpacing
        if p.coarsePass >= 1:
            options["coarse_pass"] = p.coarsePass
        if p.fixedPoints and p.movingPoints:  # the panel refuses to start with only one of them
            options.update(fixedPointsNode=p.fixedPoints, movingPointsNode=p.movingPoints)
        return dict(
            fixedVolumeNode=p.fixedVolume,
            movingVolumeNode=p.movingVolume,
            outputTransformNode=p.outputTransform,
            weights=weights,
            device=p.device.value,
            outputVolumeNode=p.outputVolume,
            jacobianVolumeNode=p.jacobianVolume,
            keepIntermediate=p.keepIntermediate,
            placeMovingUnderTransform=p.placeMovingUnderTransform,
            **options,
        )

    def _checkInstalled(self):
        message = self.installationPlan().missing_message()
        if message:
            raise RuntimeError(message)

    def prepare(
        self,
        fixedVolumeNode,
        movingVolumeNode,
        outputTransformNode=None,
        weights=None,
        device="auto",
        outputVolumeNode=None,
        **options,
    ):
        """Check the inputs and read the volumes (DIRVNetLib.mrml.prepare), then that TensorFlow is installed.

        The returned job is run by the worker (``self.worker().submit(job)``) and written into the scene by
        ``job.apply`` on the main thread.
        """
        from DIRVNetLib import mrml

        job = mrml.prepare(
            fixedVolumeNode,
            movingVolumeNode,
            outputTransformNode=outputTransformNode,
            weights=weights,
            device=device,
            outputVolumeNode=outputVolumeNode,
            **options,
        )
        self._checkInstalled()
        return job

    def register(
        self,
        fixedVolumeNode,
        movingVolumeNode,
        outputTransformNode=None,
        weights=None,
        device="auto",
        outputVolumeNode=None,
        progress=None,
        cancel=None,
        **options,
    ):
        """Register ``movingVolumeNode`` to ``fixedVolumeNode`` in the worker process (blocks); returns the grid
        transform node.

        The arguments of ``DIRVNetLib.mrml.register`` (``jacobianVolumeNode``, ``keepIntermediate``,
        ``placeMovingUnderTransform``, ``progress``, ``cancel``, ``refinement_rounds``, ``working_spacing``...),
        plus a clear error when TensorFlow is not installed yet.
        """
        from DIRVNetLib.mrml.background import register

        self._checkInstalled()
        return register(
            fixedVolumeNode,
            movingVolumeNode,
            outputTransformNode=outputTransformNode,
            weights=weights,
            device=device,
            outputVolumeNode=outputVolumeNode,
            progress=progress,
            cancel=cancel,
            worker=self.worker(),
            **options,
        )


#
# DIRVNetTest
#


class DIRVNetTest(ScriptedLoadableModuleTest):
    """Self-test (Reload and Test, ctest): registers the sample pair and checks the result numerically."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_BadInputsLeaveSceneUnchanged()
        self.setUp()
        self.test_RegisterSamplePair()

    def _loadSamplePair(self):
        paths = sampleDataPaths()
        self.assertIsNotNone(paths, "the DIRVNet sample pair is not installed next to the module")
        return [slicer.util.loadVolume(str(path), {"name": name}) for path, name in zip(paths, SAMPLE_NODE_NAMES)]

    def test_BadInputsLeaveSceneUnchanged(self):
        from DIRVNetLib.errors import InputImageError

        fixed, _ = self._loadSamplePair()
        nodes = slicer.mrmlScene.GetNumberOfNodes()
        with self.assertRaisesRegex(InputImageError, "same node"):
            DIRVNetLogic().prepare(fixed, fixed)
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), nodes)

    def test_RegisterSamplePair(self):
        import numpy as np
        import SimpleITK as sitk

        from DIRVNetLib import mrml
        from DIRVNetLib.metrics import ncc
        from DIRVNetLib.mrml.convert import volume_to_image

        logic = DIRVNetLogic()
        missing = logic.installationPlan().missing_message()
        if missing:
            self.skipTest(missing)
        fixed, moving = self._loadSamplePair()
        fixedImage, _ = volume_to_image(fixed)
        movingOnFixedGrid = sitk.Resample(volume_to_image(moving)[0], fixedImage, sitk.Transform(), sitk.sitkLinear)
        nccBefore = ncc(movingOnFixedGrid, fixedImage)
        fixedBefore = slicer.util.arrayFromVolume(fixed).copy()
        warped = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "warped")
        jacobian = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "jacobian")
        self.delayDisplay("Registering the sample pair")

        transform = logic.register(
            fixed,
            moving,
            outputVolumeNode=warped,
            jacobianVolumeNode=jacobian,
            keepIntermediate=True,
            placeMovingUnderTransform=True,
        )

        self.assertTrue(transform.IsA("vtkMRMLGridTransformNode"))
        self.assertIs(transform.GetNodeReference(mrml.FIXED_VOLUME_ROLE), fixed)
        self.assertIs(transform.GetNodeReference(mrml.MOVING_VOLUME_ROLE), moving)
        self.assertEqual(moving.GetTransformNodeID(), transform.GetID())
        np.testing.assert_array_equal(slicer.util.arrayFromVolume(fixed), fixedBefore)
        nccAfter = ncc(slicer.util.arrayFromVolume(warped).astype(float), sitk.GetArrayFromImage(fixedImage))
        self.assertGreater(nccAfter, nccBefore)
        self.assertGreater(float(np.min(slicer.util.arrayFromVolume(jacobian))), 0.0)
        self.assertGreater(transform.GetNodeReference(mrml.INTERMEDIATE_SEQUENCE_ROLE).GetNumberOfDataNodes(), 1)
        self.delayDisplay(f"Sample pair registered: NCC {nccBefore:.3f} -> {nccAfter:.3f}")
