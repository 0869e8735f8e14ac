"""The stage profiler in the real tritonserver: with RFDETR_STAGE_PROFILE in the server's
environment, every python stage of the ensemble reports where its main thread spends its time."""

from __future__ import annotations

import time

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from backends import contract as c
from backends.stage_profile import PROFILE_ENV
from tools.tritonserver import TritonServer

pytestmark = pytest.mark.integration

STAGES = ("rfdetr_seg_preprocess", "rfdetr_seg_engine", "rfdetr_seg_postprocess")


def test_each_served_stage_reports_its_main_threads_stacks(model_repository, tmp_path, monkeypatch):
    monkeypatch.setenv(PROFILE_ENV, str(tmp_path / "profiles" / "run"))  # the server inherits it
    frame = np.random.default_rng(0).integers(0, 256, (1, 120, 160, 3), dtype=np.uint8)
    image = grpcclient.InferInput(c.IMAGE, list(frame.shape), "UINT8")
    image.set_data_from_numpy(frame)

    def reports() -> dict[str, list[str]]:
        return {stage: [p.read_text() for p in (tmp_path / "profiles").glob(f"run-{stage}-*.txt")] for stage in STAGES}

    with TritonServer(model_repository, tmp_path / "tritonserver.log") as server:
        with grpcclient.InferenceServerClient(server.grpc_url) as client:
            deadline = time.monotonic() + 60
            # Reports are rewritten every 2 s: serve until each one has seen an execute.
            while not all(texts and " execute" in texts[0] for texts in reports().values()):
                assert time.monotonic() < deadline, f"no execute in every report after 60 s: {reports()}"
                client.infer("rfdetr_seg", [image])
                time.sleep(0.2)
        log = server.log_path.read_text()
    for stage, texts in reports().items():
        assert len(texts) == 1, f"{stage}: one instance, one report, got {len(texts)}"
        title, *stacks = texts[0].splitlines()
        assert title.startswith(f"# {stage} pid ") and " samples every 2 ms over " in title
        assert any(line.split()[-1] == "execute" or " execute" in line for line in stacks)
        assert f"{stage}: sampling its main thread's stacks into" in log
