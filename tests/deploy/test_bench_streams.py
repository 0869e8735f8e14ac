"""benchmarks.bench_streams' arguments: a repository is served with the options of the target it
was built for, and a folder no build wrote is refused before anything starts."""

from __future__ import annotations

import pytest

from backends.classes import ClassTable
from backends.contract import MODEL_SIZES
from backends.postprocess_settings import PostprocessSettings
from benchmarks.bench_streams import parse_args, the_server
from tools.build_repository import RepositorySpec, build_repository
from tools.targets import TARGETS


def test_a_built_repository_is_served_with_its_targets_options(tmp_path):
    shape = MODEL_SIZES["nano"]
    plan = tmp_path / "dummy.plan"  # configs only: nothing is started here
    plan.write_bytes(b"dummy")
    settings = PostprocessSettings(shape.num_queries, 0.5, ClassTable(("thing",) * 91))
    spec = RepositorySpec(TARGETS["gpu"], "tensorrt", plan, shape, settings)
    repository = build_repository(spec, tmp_path / "repository")
    server = the_server(parse_args(["--repository", str(repository)]))
    assert server.extra_args == TARGETS["gpu"].server_args() != ()


def test_a_folder_no_build_wrote_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--repository", str(tmp_path)])
    assert exit_info.value.code == 2
    assert (
        f"not a repository this project built: cannot read {tmp_path}/rfdetr_seg_preprocess" in capsys.readouterr().err
    )
