"""Packaged recipes (YAML), installed as `segflow.configs`; `segflow recipes` lists them."""
