"""The one exception imagebuild raises: every message names what failed and how to fix it."""


class ImageBuildError(RuntimeError):
    """A tool is missing, a base cannot be fetched, or a build failed (the message holds the log's tail)."""
