"""Save and load models as ``model.safetensors`` + ``model.json``; never pickles.

``torch.load`` unpickles arbitrary code, so it is never used on a path a user hands us. The
weights are a flat safetensors file; everything needed to rebuild the network and to feed it
what training saw is the model card ``model.json`` (:class:`medseq.contracts.run.ModelCard`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medseq import __version__
from medseq.contracts.run import ModelCard, write_card
from medseq.errors import CacheError
from medseq.io.atomic import atomic_path

WEIGHTS_NAME = "model.safetensors"


def save_model(directory: Path, state: dict[str, Any], card: ModelCard) -> None:
    """Write ``directory/model.safetensors`` and ``directory/model.json`` atomically."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {name: value.detach().cpu().contiguous() for name, value in state.items()}
    with atomic_path(directory / WEIGHTS_NAME) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt", "medseq": __version__})
    write_card(directory, card)


def read_weights(path: Path) -> dict[str, Any]:
    """The tensors of ``model.safetensors`` (a model directory or the file itself)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    weights = path / WEIGHTS_NAME if path.is_dir() else path
    if not weights.is_file():
        raise CacheError("no model.safetensors (is this a medseq run or model directory?)",
                         path=weights.parent)
    try:
        return dict(load_file(str(weights)))
    except (SafetensorError, OSError) as err:
        raise CacheError(f"unreadable weights ({err})", path=weights) from None
