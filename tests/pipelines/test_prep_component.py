"""The prep component under kfp.local reads a raw dataset from object storage, as it must in a cluster where no
volume is mounted into the step: data_path is the minio:// URI KFP uses for its own MinIO (a real S3 server here,
MinIO or moto, see tests/support/s3server.py), and the Dataset artifact equals the prep of the same local folder.
"""

import json

from kfp import local

from segflow.components.prep import prep as prep_component
from segflow.config import recipe_to_json
from segflow.data import open_dataset, prep
from segflow.progress import SILENT
from support.raw_data import aerial_recipe, upload_folder, write_aerial

PREFIX = "datasets/aerial"


def test_prep_component_reads_minio_uri(s3_env, bucket, tmp_path, monkeypatch):
    monkeypatch.setenv("SEGFLOW_CACHE", str(tmp_path / "cache"))
    raw = write_aerial(tmp_path / "aerial")
    upload_folder(s3_env, raw, bucket, PREFIX)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"),
               raise_on_error=True)
    task = prep_component(recipe_json=recipe_to_json(aerial_recipe()), data_path=f"minio://{bucket}/{PREFIX}")
    expected = prep(aerial_recipe(), raw, str(tmp_path / "from-local"), progress=SILENT)
    assert task.outputs["Output"] == expected.version
    artifact = task.outputs["dataset"]
    assert artifact.metadata["version"] == expected.version
    dataset = open_dataset(artifact.path)
    assert dataset.manifest.source_root == f"s3://{bucket}/{PREFIX}"
    assert json.loads(dataset.manifest.model_dump_json())["sources"] == expected.manifest.sources
