"""Rock Token detection [Sec. 2.2-2.5, App. B, E] (the CLI lives in :mod:`rock.detect.cli`)."""

from rock.detect.cli import add_arguments, run  # noqa: F401
