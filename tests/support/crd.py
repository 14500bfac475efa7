"""Validate custom resources strictly against the CRD schemas in ../shared/schemas.

A CRD's OpenAPI schema lets unknown fields through unless told otherwise (the API server
prunes them silently). For a manifest check that is the wrong default: a typo such as
`shutdownAfterJobFinish` would vanish in the cluster. So every object schema that lists its
properties, and does not say x-kubernetes-preserve-unknown-fields, gets
additionalProperties: false here.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import jsonschema
import yaml

SCHEMAS = Path(__file__).resolve().parents[2].parent / "shared" / "schemas"
CRD_FILES = {
    ("ray.io/v1", "RayJob"): "kuberay/ray.io_rayjobs.yaml",
    ("ray.io/v1", "RayCluster"): "kuberay/ray.io_rayclusters.yaml",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "prometheus-operator/crd-servicemonitors.yaml",
    ("monitoring.coreos.com/v1", "PodMonitor"): "prometheus-operator/crd-podmonitors.yaml",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheus-operator/crd-prometheusrules.yaml",
}


def is_custom(obj: dict) -> bool:
    return (obj.get("apiVersion"), obj.get("kind")) in CRD_FILES


@functools.cache
def strict_schema(api_version: str, kind: str) -> dict:
    crd = yaml.safe_load((SCHEMAS / CRD_FILES[(api_version, kind)]).read_text())
    version = api_version.split("/")[1]
    schema = next(v for v in crd["spec"]["versions"] if v["name"] == version)["schema"]["openAPIV3Schema"]
    return _close(copy.deepcopy(schema))


def _close(schema: dict) -> dict:
    if isinstance(schema, dict):
        if "properties" in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema.setdefault("additionalProperties", False)
        for key, value in schema.items():
            if key in ("properties", "patternProperties"):
                for child in value.values():
                    _close(child)
            elif isinstance(value, dict):
                _close(value)
            elif isinstance(value, list):
                for child in value:
                    _close(child)
    return schema


def validate(obj: dict) -> list[str]:
    """Every schema violation of a custom resource, as 'path: message' lines ([] when valid)."""
    validator = jsonschema.Draft7Validator(strict_schema(obj["apiVersion"], obj["kind"]))
    return [f"{'.'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}"
            for e in sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path))]


def validate_any(obj: dict, kubernetes_versions: tuple[str, ...] = ("1.30", "1.33")) -> list[str]:
    """Strict validation of any object: CRD schemas for custom resources, kubernetes-validate otherwise."""
    if is_custom(obj):
        return validate(obj)
    import kubernetes_validate

    errors = []
    for version in kubernetes_versions:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{obj['kind']}/{obj['metadata'].get('name')} @ {version}: {exc.message}")
    return errors
