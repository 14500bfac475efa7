"""S3Settings apart from the S3 store: reading them needs no S3 client library.

Training hands the same endpoint to Ray's pyarrow filesystem, so it reads these settings
without importing minio, which `segflow.store.s3` does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields


@dataclass(frozen=True)
class S3Settings:
    """Where the S3 server is and how to sign requests; read from flags or the environment.

    Environment: SEGFLOW_S3_ENDPOINT (or AWS_ENDPOINT_URL), AWS_ACCESS_KEY_ID,
    AWS_SECRET_ACCESS_KEY, AWS_REGION. The same AWS_* variables are what Ray's pyarrow S3
    filesystem reads, so checkpoints and artifacts share one set of credentials.
    """

    endpoint: str = ""
    access_key: str = ""
    secret_key: str = ""
    region: str | None = None
    retries: int = 4
    backoff: float = 0.25
    connect_timeout: float = 5.0

    @classmethod
    def from_env(cls, **overrides) -> S3Settings:
        values = {
            "endpoint": os.environ.get("SEGFLOW_S3_ENDPOINT") or os.environ.get("AWS_ENDPOINT_URL", ""),
            "access_key": os.environ.get("AWS_ACCESS_KEY_ID", ""),
            "secret_key": os.environ.get("AWS_SECRET_ACCESS_KEY", ""),
            "region": os.environ.get("AWS_REGION") or None,
        }
        known = {f.name for f in fields(cls)}
        values.update({k: v for k, v in overrides.items() if k in known and v is not None})
        return cls(**values)
