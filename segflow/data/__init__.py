"""Datasets: format readers (registry), prep into versioned artifacts, and loading them back."""

from segflow.data.dataset import PreparedDataset, open_dataset
from segflow.data.formats import make_reader
from segflow.data.manifest import Manifest
from segflow.data.prep import PrepResult, prep

__all__ = ["Manifest", "PrepResult", "PreparedDataset", "make_reader", "open_dataset", "prep"]
