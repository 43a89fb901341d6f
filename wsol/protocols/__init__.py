"""Localization protocols: the box convention (`boxes`), the engines (`box_sweep`: the
threshold sweep of the box metrics; `pxap`: the PxAP histograms; `components`: connected
regions and contour boxes), the settings' range checks (`settings`) and one torchmetrics
metric per protocol (see docs/ARCHITECTURE.md, "Protocols").

Pure array code: imports neither Lightning nor `wsol.models` nor `wsol.data`.
"""

from wsol.protocols.cam2016 import Cam2016Metric, cam2016_box
from wsol.protocols.cam2016_official import Cam2016OfficialMetric
from wsol.protocols.classification import ClassificationMetric
from wsol.protocols.metric import ProtocolMetric
from wsol.protocols.wsolevaluation import WSOLEvaluationMetric, check_scoremap

__all__ = [
    "Cam2016Metric",
    "Cam2016OfficialMetric",
    "ClassificationMetric",
    "ProtocolMetric",
    "WSOLEvaluationMetric",
    "cam2016_box",
    "check_scoremap",
]
