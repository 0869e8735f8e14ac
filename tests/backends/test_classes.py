from __future__ import annotations

import json

import numpy as np
import pytest

from backends.classes import ClassTable
from backends.torchvision_cpu import ensure_torchvision_importable

ensure_torchvision_importable()
from rfdetr.assets.coco_classes import COCO_CLASS_NAMES, COCO_CLASSES  # noqa: E402


def test_coco_pretrained_uses_sparse_category_ids():
    table = ClassTable.from_rfdetr(list(COCO_CLASS_NAMES), 90, COCO_CLASSES)
    assert len(table.names) == 91
    unnamed = [i for i, name in enumerate(table.names) if name is None]
    assert unnamed == [0, 12, 26, 29, 30, 45, 66, 68, 69, 71, 83]
    assert table.names[1] == "person" and table.names[90] == "toothbrush"


def test_fine_tuned_maps_ids_directly_and_leaves_no_object_unnamed():
    table = ClassTable.from_rfdetr(["cat", "dog"], 2, COCO_CLASSES)
    assert table.names == ("cat", "dog", None)


def test_named_and_names_of():
    table = ClassTable(("a", None, "c"))
    ids = np.array([0, 1, 2, 3, -1])
    assert table.named(ids).tolist() == [True, False, True, False, False]
    assert table.names_of(np.array([2, 0])) == ["c", "a"]


def test_save_load_round_trip(tmp_path):
    table = ClassTable(("a", None, "c"))
    table.save(tmp_path / "t.json")
    assert ClassTable.load(tmp_path / "t.json") == table


@pytest.mark.parametrize("content", ['{"a": 1}', "[1, 2]", "[null, null]"])
def test_load_rejects_bad_tables(tmp_path, content):
    (tmp_path / "t.json").write_text(content)
    with pytest.raises(ValueError):
        ClassTable.load(tmp_path / "t.json")
    json.loads(content)  # the file itself was valid JSON: the table is what is wrong
