"""The client package works where torch is not installed, and the wire format needs neither torch
nor cv2: each check runs in a fresh interpreter in which those modules cannot be imported."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_without(modules: list[str], code: str) -> subprocess.CompletedProcess:
    """Runs `code` in a new interpreter at the repository root where importing any of `modules`
    (or anything under them) raises ImportError."""
    prelude = f"import sys\nfor name in {modules!r}:\n    sys.modules[name] = None\n"
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_ran(completed: subprocess.CompletedProcess) -> None:
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip().endswith("ok"), completed.stdout + completed.stderr


def test_the_client_package_imports_and_decodes_without_torch():
    completed = run_without(
        ["torch"],
        """
        import importlib

        import numpy as np

        for module in (
            "clients",
            "clients.results",
            "clients.stream",
            "clients.transports",
            "clients.stream_video",
            "clients.annotate",
            "clients.server_stats",
            "clients.reconnect",
            "clients.video",
            "clients.video_capture",
            "clients.outputs",
            "clients.signals",
            "clients.runner",
            "clients.sources",
            "clients.drop_policy",
            "clients.status",
            "clients.streams",
            "clients.supervision_adapter",
            "clients.command",
            "clients.check",
            "clients.cli",
        ):
            importlib.import_module(module)

        from backends.results import SegmentationResult, encode_result
        from clients.results import result_from_response, to_json_record

        # The import guard is still in place: nothing above reached torch.
        try:
            import torch  # noqa: F401
        except ImportError:
            pass
        else:
            raise AssertionError("torch was importable")

        expected = SegmentationResult(
            image_size=(4, 6),
            boxes=np.array([[0, 0, 2, 2], [1, 1, 5, 3]], np.float32),
            scores=np.array([0.9, 0.4], np.float32),
            class_ids=np.array([3, 7], np.int32),
            class_names=["car", "g\\u00e2teau"],
            rle_counts=[b"04", b"9"],
            polygons=[np.array([[0, 0], [1, 0], [1, 1]], np.int32), np.zeros((0, 2), np.int32)],
        )

        class Response:  # as served: every output under a leading batch axis of 1
            def __init__(self, outputs):
                self.outputs = {name: array[None] for name, array in outputs.items()}

            def as_numpy(self, name):
                return self.outputs.get(name)

        decoded = result_from_response(Response(encode_result(expected)))
        assert decoded.image_size == (4, 6)
        np.testing.assert_array_equal(decoded.boxes, expected.boxes)
        np.testing.assert_array_equal(decoded.scores, expected.scores)
        assert decoded.class_ids.tolist() == [3, 7]
        assert decoded.class_names == ["car", "g\\u00e2teau"]
        assert decoded.rle_counts == [b"04", b"9"]
        assert [p.tolist() for p in decoded.polygons] == [[[0, 0], [1, 0], [1, 1]], []]
        assert to_json_record(0, decoded, 0.0)["detections"][1]["class_name"] == "g\\u00e2teau"
        print("ok")
        """,
    )
    assert_ran(completed)


def test_the_wire_format_imports_without_torch_or_cv2():
    completed = run_without(
        ["torch", "cv2"],
        """
        import numpy as np

        from backends.results import SegmentationResult, decode_result, encode_result

        outputs = encode_result(SegmentationResult(image_size=(2, 3)))
        assert decode_result(outputs.get).image_size == (2, 3)
        print("ok")
        """,
    )
    assert_ran(completed)
