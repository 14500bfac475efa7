"""segflow: image segmentation and classification from dataset to served, monitored model.

The core library (no Kubernetes): recipes, data formats and prep, the artifact store, and
the CLI. Heavier layers (training, search, serving, pipelines) import from here.
"""

__version__ = "0.1.0"
