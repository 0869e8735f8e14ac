"""Lines in tritonserver's log from a python stage (its stub forwards them to the server)."""


def log_info(message: str) -> None:
    """A line in tritonserver's log."""
    import triton_python_backend_utils as pb_utils  # exists only inside a stub

    pb_utils.Logger.log_info(message)
