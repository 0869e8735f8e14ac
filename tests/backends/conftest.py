"""Fixtures shared by the backends unit tests."""

import logging

import pytest


@pytest.fixture
def log_lines():
    """The lines backends send to tritonserver's log, in a list that fills as they come. Outside
    a stub, backends.server_log.log_info writes them to its Python logger, which this listens to."""
    lines: list[str] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: lines.append(record.getMessage())
    logger = logging.getLogger("backends.server_log")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield lines
    logger.removeHandler(handler)
    logger.setLevel(level)
