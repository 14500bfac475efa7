"""Serving with TorchServe (installed as `segflow.serving`).

    codec      image bytes in (checked, converted) and answers out (mask, json, overlay, cutout, topk)
    predictor  the served computation, free of TorchServe: resize, normalise, predict, upsample, argmax
    handler    the TorchServe handler: per-request answers and 4xx refusals within a dynamic batch
    telemetry  the handler's custom metrics, declared in metrics.yaml
    archive    `segflow package`: model artifact -> .mar with its sha256, and the check before serving
    server     `segflow serve`: one TorchServe whose every file lives in a run directory
    client     `segflow predict`: HTTP with the key, the Content-Type and the output choice
    management TorchServe's management API: register a version, make it the default, list versions
    deploy     `segflow deploy`: an archive version live on a running TorchServe, or the `helm upgrade` for it
"""
