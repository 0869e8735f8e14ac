"""Class ids -> names, and the rule that drops ids without a name.

RF-DETR's class logits have one more column than the model has classes. Two layouts exist:
- COCO-pretrained checkpoints: 91 columns indexed by COCO category id (1..90, sparse); ids
  0, 12, 26, 29, 30, 45, 66, 68, 69, 71 and 83 are unused and have no name.
- Fine-tuned checkpoints: ids 0..n-1 are the n class names; the last column (id n) is DETR's
  "no object".
Rule: a detection whose class id has no name is dropped after selection (top-k and score
threshold), so every kept detection is one rfdetr's own PostProcess returns, with a name.
The table is a JSON list indexed by class id, null where an id has no name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class ClassTable:
    """names[i] is class id i's name, or None when id i has no name."""

    names: tuple[str | None, ...]

    def __post_init__(self) -> None:
        if not any(self.names):
            raise ValueError("class table has no named class")

    @classmethod
    def load(cls, path: str | Path) -> ClassTable:
        names = json.loads(Path(path).read_text())
        if not isinstance(names, list) or not all(n is None or isinstance(n, str) for n in names):
            raise ValueError(f"{path}: expected a JSON list of class names (strings or null)")
        return cls(tuple(names))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(list(self.names), indent=1))

    @classmethod
    def from_rfdetr(
        cls, class_names: list[str], num_classes: int, coco_classes: dict[int, str]
    ) -> ClassTable:
        """The table for an rfdetr model: COCO sparse ids when it is COCO-pretrained.

        Mirrors rfdetr's predict(): a model is COCO-pretrained when its logit slots outnumber
        its class names and the names are COCO's 80, in COCO id order.
        """
        coco_names = [name for _, name in sorted(coco_classes.items())]
        if num_classes > len(class_names) and list(class_names) == coco_names:
            return cls(tuple(coco_classes.get(i) for i in range(num_classes + 1)))
        return cls(tuple(class_names) + (None,))

    def named(self, class_ids: np.ndarray) -> np.ndarray:
        """Boolean mask over class_ids: True where the id has a name."""
        ids = np.asarray(class_ids)
        in_range = (ids >= 0) & (ids < len(self.names))
        has_name = np.array([n is not None for n in self.names], dtype=bool)
        return in_range & has_name[np.clip(ids, 0, len(self.names) - 1)]

    def names_of(self, class_ids: np.ndarray) -> list[str]:
        """Names of class ids that all have one (see named())."""
        return [self.names[int(i)] for i in class_ids]
