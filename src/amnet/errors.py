"""User-facing errors: one clear line that names the input and what to do, never a traceback."""


class AmnetError(Exception):
    """An error caused by input or configuration; the CLI prints it as one line and exits 2."""


class DatasetError(AmnetError):
    """A dataset cannot be read at all (no manifest, wrong columns, empty...)."""


class ConfigError(AmnetError):
    """A configuration value is out of range or unknown."""
