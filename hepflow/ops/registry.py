"""The ops transforms a training config can name (``transform: [{jet_images: {npix: 37}}]``); the
reconstruction graphs add theirs (:data:`hepflow.reco.TRANSFORMS`)."""
from __future__ import annotations

from hepflow.data.transforms import Normalize
from hepflow.ops.calo import ShowerShapes
from hepflow.ops.events import ChallengeObjects, EventFeatures
from hepflow.ops.jets import ConstituentFeatures, HighLevelFeatures, JetImages
from hepflow.ops.lartpc import SemanticImage
from hepflow.ops.pileup import PileupMitigation, PummlImages

__all__ = ["TRANSFORMS"]

#: Config name → transform class or factory (each with keyword arguments and a ``get_config()``).
TRANSFORMS = {"jet_images": JetImages, "constituent_features": ConstituentFeatures,
              "high_level_features": HighLevelFeatures, "shower_shapes": ShowerShapes, "normalize": Normalize,
              "semantic_image": SemanticImage, "pileup_mitigation": PileupMitigation, "pumml_images": PummlImages,
              "event_features": EventFeatures, "challenge_objects": ChallengeObjects}
