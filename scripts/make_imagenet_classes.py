"""Write ``src/restok/assets/imagenet_classes.json``: the 1,000 ImageNet-1k class names in index order, taken once
from the ``_IMAGENET_CATEGORIES`` list of an installed torchvision wheel (read as text, not imported).

    python scripts/make_imagenet_classes.py
"""

from __future__ import annotations

import ast
import importlib.util
import json
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "src" / "restok" / "assets" / "imagenet_classes.json"


def main() -> None:
    """Find torchvision's ``models/_meta.py``, read the list literal, check it and write the JSON."""
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("needs an installed torchvision wheel (pip install torchvision --no-deps)")
    meta = Path(spec.submodule_search_locations[0]) / "models" / "_meta.py"
    tree = ast.parse(meta.read_text())
    names = next(
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "_IMAGENET_CATEGORIES" for t in node.targets)
    )
    if len(names) != 1000 or len(set(names)) != 1000:
        raise SystemExit(f"expected 1000 distinct names, got {len(names)} ({len(set(names))} distinct)")
    OUT.write_text(
        json.dumps({"source": "torchvision/models/_meta.py _IMAGENET_CATEGORIES", "names": names}, indent=0) + "\n"
    )
    print(f"wrote {OUT} ({len(names)} names; 207 = {names[207]!r}, 360 = {names[360]!r})")


if __name__ == "__main__":
    main()
