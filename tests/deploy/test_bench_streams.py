"""benchmarks.bench_streams' arguments: a repository is served with the options of the target it
was built for, and a folder no build wrote is refused before anything starts."""

from __future__ import annotations

import pytest

from benchmarks.bench_streams import parse_args, the_server
from tests.repositories import config_spec
from tools.build_repository import render_repository
from tools.targets import TARGETS


def test_a_built_repository_is_served_with_its_targets_options(tmp_path):
    repository = render_repository(config_spec("gpu", "tensorrt", tmp_path), tmp_path / "repository")
    server = the_server(parse_args(["--repository", str(repository)]))
    assert server.extra_args == TARGETS["gpu"].server_args() != ()
    assert server.cuda_mps


def test_a_folder_no_build_wrote_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--repository", str(tmp_path)])
    assert exit_info.value.code == 2
    assert (
        f"not a repository this project built: cannot read {tmp_path}/rfdetr_seg_preprocess" in capsys.readouterr().err
    )
