"""What the model engines (``ingredients``, ``wan-vace``) share: a model folder, the device and dtype they
run in, the spec read from the folder once, and the library versions recorded with every clip."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from storyreel.plan import EngineSpec

if TYPE_CHECKING:
    import torch

    from storyreel.engines.text_cache import TextEmbeddingCache


class ModelEngine:
    """Base of the engines that run a diffusers pipeline from ``model_dir`` on ``device`` (default: CUDA
    if present; bf16 there, fp32 on the CPU). Subclasses set :attr:`version` and implement
    :meth:`read_spec`, ``load`` and ``render``."""

    version: str

    def __init__(self, model_dir: Path, *, device: str | None = None, memory: str = "auto"):
        self.model_dir = Path(model_dir)
        self.memory = memory
        self.requested_device = device
        self.pipe = None
        self.device: torch.device | None = None
        self.dtype: torch.dtype | None = None
        self._spec: EngineSpec | None = None
        self._texts: TextEmbeddingCache | None = None
        self.load_seconds = 0.0

    def read_spec(self) -> EngineSpec:
        """The engine's spec, read from the model folder."""
        raise NotImplementedError

    def spec(self) -> EngineSpec:
        if self._spec is None:
            self._spec = self.read_spec()
        return self._spec

    def versions(self) -> dict[str, str]:
        """What the clip was made with: engine version, model folder and revision, libraries, device."""
        import diffusers
        import torch
        import transformers

        found = {
            "engine": self.version,
            "model_dir": str(self.model_dir),
            "model_revision": self.spec().model_revision or "",
            "torch": torch.__version__,
            "diffusers": diffusers.__version__,
            "transformers": transformers.__version__,
            "device": str(self.device),
            "dtype": str(self.dtype).removeprefix("torch."),
            "memory": self.memory,
        }
        if self.device is not None and self.device.type == "cuda":
            found["gpu"] = torch.cuda.get_device_name(self.device)
        return found

    def choose_device(self) -> None:
        """Set :attr:`device` and :attr:`dtype`, and silence the libraries' own progress bars (the runner
        shows its own)."""
        import diffusers.utils.logging
        import torch
        import transformers.utils.logging

        diffusers.utils.logging.disable_progress_bar()
        transformers.utils.logging.disable_progress_bar()
        self.device = torch.device(self.requested_device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
