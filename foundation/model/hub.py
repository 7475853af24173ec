"""What a saved model folder carries beyond transformers' own files, so it works as a Hugging Face folder:

- `foundation_hf.py` + `auto_map` in `config.json`: `AutoModel.from_pretrained(dir, trust_remote_code=True)`
  works without `import foundation.model` first (the file only imports the installed package's classes);
- `next_event_heads.safetensors` (event surprise) travels along when a loaded model is saved again;
- files readable by others (transformers writes `model.safetensors` through a private temporary file, 0600).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

# The next-event heads file written by the HFExport callback (foundation.pointintime.surprise.HEADS_FILE).
HEADS_FILE = "next_event_heads.safetensors"
REMOTE_CODE_FILE = "foundation_hf.py"
AUTO_MAP = {
    "AutoConfig": "foundation_hf.FoundationConfig",
    "AutoModel": "foundation_hf.FoundationModel",
    "AutoModelForPreTraining": "foundation_hf.FoundationForPretraining",
}
_REMOTE_CODE = '''"""Lets `AutoModel.from_pretrained(<this folder>, trust_remote_code=True)` find the payment foundation model:
the classes come from the installed `foundation` package (pip install the project that wrote this folder)."""

from foundation.model import FoundationConfig, FoundationForPretraining, FoundationModel

__all__ = ["FoundationConfig", "FoundationForPretraining", "FoundationModel"]
'''


def write_remote_code(directory: str | Path) -> None:
    """Write the `auto_map` target module next to `config.json`."""
    (Path(directory) / REMOTE_CODE_FILE).write_text(_REMOTE_CODE)


def carry_heads(source: str | os.PathLike | None, directory: str | Path) -> None:
    """Copy the next-event heads of the folder a model was loaded from (`source`) into `directory`."""
    if not source or not Path(source).is_dir():
        return
    heads, target = Path(source) / HEADS_FILE, Path(directory) / HEADS_FILE
    if heads.exists() and heads.resolve() != target.resolve():
        shutil.copyfile(heads, target)


def make_readable(directory: str | Path) -> None:
    """Give the folder's files the mode of a normally created file (0666 less the umask, usually 0644)."""
    umask = os.umask(0)
    os.umask(umask)
    for path in Path(directory).iterdir():
        if path.is_file():
            path.chmod(0o666 & ~umask)
