"""Keras models; factories return ``keras.Model``s that save and reload as ``.keras``."""
from __future__ import annotations

from hepflow.models.adversarial import MassDecorrelatedAutoencoder, adversarial_autoencoder
from hepflow.models.autoencoders import PCA, Autoencoder, conv_autoencoder, dense_autoencoder, pca, set_autoencoder
from hepflow.models.calo import calo_cnn, calo_energy_cnn
from hepflow.models.calo_flow import CaloFlow, calo_flow
from hepflow.models.calo_vae import CaloVAE, calo_vae
from hepflow.models.calogan import CaloGAN, calogan
from hepflow.models.cnn import deeptop_cnn, jet_cnn, macaluso_shih_cnn
from hepflow.models.deep_sets import energy_flow_network, particle_flow_network
from hepflow.models.dnn import high_level_dnn
from hepflow.models.label_proportions import LabelProportions, label_proportions
from hepflow.models.lartpc import lartpc_event_cnn, lartpc_unet
from hepflow.models.particlenet import particlenet, particlenet_lite
from hepflow.models.pumml import pumml
from hepflow.models.trees import gru_tagger, lundnet, mpnn_tagger, recnn_tagger
from hepflow.models.vae import VariationalAutoencoder, vae

__all__ = ["jet_cnn", "deeptop_cnn", "macaluso_shih_cnn", "high_level_dnn", "particle_flow_network",
           "energy_flow_network", "particlenet", "particlenet_lite",
           "calo_cnn", "calo_energy_cnn", "calogan", "pca", "dense_autoencoder", "conv_autoencoder", "vae",
           "adversarial_autoencoder", "label_proportions", "lartpc_event_cnn", "lartpc_unet", "recnn_tagger", "lundnet",
           "mpnn_tagger", "gru_tagger", "pumml", "set_autoencoder", "calo_vae", "calo_flow"]
