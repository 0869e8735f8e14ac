"""Lines in tritonserver's log from a python stage (its stub forwards them to the server)."""

import logging


def log_info(message: str) -> None:
    """A line in tritonserver's log; outside a stub (a benchmark, a test calling backends
    directly), a line of this module's Python logger."""
    try:
        import triton_python_backend_utils as pb_utils  # exists only inside a stub
    except ImportError:
        logging.getLogger(__name__).info(message)
        return
    pb_utils.Logger.log_info(message)
