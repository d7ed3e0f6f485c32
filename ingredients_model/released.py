"""Facts of the released Ingredients checkpoint that callers plan with, importable without torch.

One place for the numbers the pipeline, the transformer config, training and any application share:
a story can be checked against them (clip length, people per clip) before a model folder is loaded.
"""

from __future__ import annotations

REPO_ID = "feizhengcong/Ingredients"
"""Hugging Face repository of the released model folder."""
DOWNLOAD_GB = 25
"""Approximate size of the released model folder in GB: the bf16 transformer's two shards are listed
at 10 GB + 2.88 GB in the repository; the T5-XXL encoder (about 9.5 GB in bf16), the CogVideoX VAE
(about 0.9 GB) and the face models (about 1.5 GB) are the CogVideoX-5B-I2V and ConsisID files."""
TRANSFORMER_CLASS = "ConsisIDTransformer3DModel"
"""The ``_class_name`` of the released ``transformer/config.json``."""
FPS = 8
"""Frame rate the released model was trained at."""
MAX_FRAMES = 49
"""Frames per clip of the released model (about 6.1 s at :data:`FPS`)."""
TRAINED_PEOPLE = 2
"""People per clip the released weights were trained with."""
STEPS = 50
"""Default number of denoising steps."""
GUIDANCE = 6.0
"""Default classifier-free guidance scale."""
CFG_ROUTING = "released"
"""Default face injection under classifier-free guidance, as the released code computes it: routed and
projected from the unconditional half's hidden states, the same injection added to both halves."""
CFG_ROUTINGS = ("released", "per_branch")
"""The choices for ``cfg_routing``: ``per_branch`` routes each guidance half with its own hidden states."""
