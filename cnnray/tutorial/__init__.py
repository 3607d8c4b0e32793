"""The tutorial's classes under the names it taught, each a thin, correct layer over cnnray's own parts.

Every class's docstring says what the tutorial's version got wrong (or what is easy to get wrong there) and what
this one does instead. Nothing here imports Ray or MLflow.
"""

from cnnray.tutorial.activations import ActivationComparison, AdaptiveActivation, ModernActivations
from cnnray.tutorial.attention import CBAM, AdvancedPooling, ChannelAttention, SpatialAttention
from cnnray.tutorial.blocks import AttentionConvBlock, ModernCNN, RegularizedConvBlock, ResidualBlock
from cnnray.tutorial.convolution import ConvolutionDemo, simulate_simple_cell
from cnnray.tutorial.optimizer import ModelOptimizer
from cnnray.tutorial.pipeline import ImageClassificationPipeline
from cnnray.tutorial.regularization import AdvancedNormalization, DropBlock2D, StochasticDepth
from cnnray.tutorial.schedule import WarmupCosineAnnealingLR
from cnnray.tutorial.trainer import AdaptiveTrainer

__all__ = [
    "ActivationComparison", "AdaptiveActivation", "AdaptiveTrainer", "AdvancedNormalization", "AdvancedPooling",
    "AttentionConvBlock", "CBAM", "ChannelAttention", "ConvolutionDemo", "DropBlock2D", "ImageClassificationPipeline",
    "ModelOptimizer", "ModernActivations", "ModernCNN", "RegularizedConvBlock", "ResidualBlock", "SpatialAttention",
    "StochasticDepth", "WarmupCosineAnnealingLR", "simulate_simple_cell",
]
