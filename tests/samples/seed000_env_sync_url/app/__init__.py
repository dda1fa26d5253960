"""The sample application's package: the app-specific part its env.py imports.

When SAMPLE_IMPORT_MARKER names a file, importing this package appends a line
to it. Tests use it to prove whether env.py ran (the runner's fast path must
not run it); it is test instrumentation, not configuration.
"""

import os

_marker = os.environ.get("SAMPLE_IMPORT_MARKER")
if _marker:
    with open(_marker, "a") as _f:
        _f.write(f"{os.getpid()} imported app\n")
