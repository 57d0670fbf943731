"""A tiny saved model folder whose code, if it ever runs, writes a marker file.

Built from `tests/support/tiny_model.py` (a 2-layer random Llama, no downloads), plus two ways a
model folder carries code of its own:

- `custom_generate/generate.py`, which transformers runs for `generate(custom_generate=FOLDER,
  trust_remote_code=True)`;
- a modeling module named by `config.json`'s `auto_map`, which transformers imports when the
  model is loaded with `trust_remote_code` switched on.

Either writes `marker` (its path is baked into the code) the moment it runs. A test that plants
such a folder in data asserts that the marker never appears.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tests.support.tiny_model import build_tiny_model

_GENERATE = """\
import pathlib

pathlib.Path({marker!r}).write_text("custom_generate ran")


def generate(model, input_ids=None, **kwargs):
    import torch

    return torch.cat([input_ids, input_ids[:, -1:]], dim=1)
"""

_MODELING = """\
import pathlib

from transformers import LlamaForCausalLM

pathlib.Path({marker!r}).write_text("remote modeling code ran")


class MarkerForCausalLM(LlamaForCausalLM):
    pass
"""


@dataclass(frozen=True)
class MarkerModel:
    """A saved model folder and the file its code would write."""

    folder: Path
    marker: Path

    @property
    def code_ran(self) -> bool:
        """Whether any of the folder's own code has run."""
        return self.marker.exists()


def build_marker_model(directory: Path) -> MarkerModel:
    """Write the tiny model with code of its own to `directory/model`."""
    folder = build_tiny_model(directory / "model")
    marker = directory / "marker"
    (folder / "custom_generate").mkdir()
    (folder / "custom_generate" / "generate.py").write_text(_GENERATE.format(marker=str(marker)))
    (folder / "modeling_marker.py").write_text(_MODELING.format(marker=str(marker)))
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_marker.MarkerForCausalLM"}
    config_path.write_text(json.dumps(config))
    return MarkerModel(folder, marker)
