"""Models: the registry's factory, the ModelConfig that travels with the weights, and model artifacts.

The face below is what other packages use: `artifact` (save and load versioned model
artifacts) and `preprocess` (normalisation, images to inputs) are public modules. The
compressed models' modules (`darts`, `pruned`, `quantized`, and `traced`, what pruning and
int8 share) are public to segflow.compress, which writes those models, but stay out of this
face: the registry imports them only to build such a model, so serving or training a float
model never loads NNI's or torch.ao's quantization machinery. The architectures' modules
(unet, fcn, classifiers, torchvision_seg) are reached through `create_model` only.
"""

from segflow.models import artifact, preprocess
from segflow.models.model_config import ModelConfig
from segflow.models.registry import count_parameters, create_model, load_weights, probabilities

__all__ = ["ModelConfig", "artifact", "count_parameters", "create_model", "load_weights", "preprocess",
           "probabilities"]
