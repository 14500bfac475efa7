"""What tests/charts/test_deploy_docs.py runs where docs/deploy.md says `segflow train RECIPE --out URI`.

A small untrained U-Net saved as that recipe's model at URI/model, as training would publish it, so
that `segflow package` and everything after it run as written without minutes of training. Run as
a script (`python tests/support/deploy_docs.py RECIPE URI`) in the docs' shell session.
"""

from __future__ import annotations

import sys
import zlib
from pathlib import Path

from segflow.models.artifact import save_model
from segflow.store import join_uri

# Only now: tests/segflow (the tests of the package) would shadow the installed segflow if tests/
# were on the path before segflow was imported.
sys.path.append(str(Path(__file__).resolve().parents[1]))
from support.serving import tiny_segmenter  # noqa: E402


def save_untrained(recipe: str, out: str) -> None:
    """Publish a model under RECIPE's name at OUT/model; another OUT gives other weights, so another version."""
    model, config = tiny_segmenter(seed=zlib.crc32(out.encode()))
    card = save_model(join_uri(out, "model"), model, config, {"recipe": {"name": recipe}}, [])
    print(f"model {card['version']} at {join_uri(out, 'model')} (untrained: standing in for segflow train)")


if __name__ == "__main__":
    save_untrained(*sys.argv[1:])
