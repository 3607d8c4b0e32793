"""Image classifiers: a registry of ResNet-family models built from `cnnray.layers`.

    model = create_model("cbam_resnet18", num_classes=10, stem="cifar", width=0.5)

The tutorial's hand-written networks are configurations of these models:

- `AttentionConvBlock` (conv-norm-act pair with CBAM, residual) is `BasicBlock(c, c, attn="cbam")`;
  a network of them is `create_model("cbam_resnet18", stem="cifar")`.
- `RegularizedConvBlock` (conv block with DropBlock and stochastic depth) is
  `BasicBlock(c, c, drop_block=0.1, drop_block_size=5, drop_path=0.1)`; in a network:
  `create_model("resnet18", stem="cifar", drop_block=0.1, drop_block_size=5, drop_path_rate=0.1)`.
- `ModernCNN` (attention + regularized blocks, modern activation, learned downsampling, head dropout):
  `create_model("cbam_resnet18", stem="cifar", act="mish", pool="mixed", drop_block=0.1,
  drop_block_size=5, drop_path_rate=0.1, drop_rate=0.2, zero_init_residual=True)`.
"""

from cnnray.models import variants as _variants  # noqa: F401  (registers the named models)
from cnnray.models.adapt_weights import adapt_input_conv, load_initial_weights
from cnnray.models.blocks import BasicBlock, Bottleneck
from cnnray.models.complexity import count_flops, count_params
from cnnray.models.init import init_classifier, init_weights, zero_init_last_norms
from cnnray.models.load_report import LoadReport
from cnnray.models.registry import create_model, list_models, model_options, register_model
from cnnray.models.resnet import ResNet, scale_width
from cnnray.models.summary import model_cost, summarize_models
from cnnray.models.torchvision_weights import torchvision_classes, torchvision_state
from cnnray.models.weights_file import WeightsError, read_state_file, sha256_file
from cnnray.models.weights_guess import guess_architecture

__all__ = [
    "BasicBlock", "Bottleneck", "LoadReport", "ResNet", "WeightsError", "adapt_input_conv", "count_flops",
    "count_params", "create_model", "guess_architecture", "init_classifier", "init_weights", "list_models",
    "load_initial_weights", "model_cost", "model_options", "read_state_file", "register_model", "scale_width",
    "sha256_file", "summarize_models", "torchvision_classes", "torchvision_state", "zero_init_last_norms",
]
