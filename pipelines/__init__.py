"""KFP pipelines composed from segflow.components; compiled IR YAML is kept beside each one."""
