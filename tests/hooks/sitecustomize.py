"""A converter crash on purpose, for the tests of crash containment (tests/compress/test_failures.py).

A test puts this folder on PYTHONPATH and names a mode in CRASH_CONVERTING; Python imports this module when each
process starts, and in the compress worker (EDGEKERAS_WORKER=1) it makes converting that mode die as a converter
segfault would. Every other process (the CLI, edgekeras' other children) is left alone.
"""

import os

if os.environ.get("EDGEKERAS_WORKER") and os.environ.get("CRASH_CONVERTING"):
    import signal
    import sys

    from edgekeras.compress import ptq

    _convert = ptq.convert

    def convert(source, mode, **kwargs):
        if mode == os.environ["CRASH_CONVERTING"]:
            sys.stderr.write(f"simulated converter crash while converting {mode}\n")
            sys.stderr.flush()
            os.kill(os.getpid(), signal.SIGSEGV)
        return _convert(source, mode, **kwargs)

    ptq.convert = convert
