"""Every environment variable storyreel reads, with what it does: the one list the README and ``--help``
show (a test checks that each ``STORYREEL_*`` name in the code is listed here and in the README)."""

from __future__ import annotations

__all__ = ["ENVIRONMENT", "environment_help"]

ENVIRONMENT: dict[str, str] = {
    "STORYREEL_MODEL": "model folder used when neither --model nor the story's defaults.model names one",
    "STORYREEL_WAN_MODEL": (
        "Wan VACE model folder used when neither --wan-model nor the story's defaults.wan_model names one"
    ),
    "STORYREEL_CAST": "cast library used when neither --cast-library nor the story's cast_library names one",
    "STORYREEL_FONT": "TrueType font for burned-in captions, title and credit cards (default: DejaVu Sans)",
    "STORYREEL_CLIP": "local CLIP ViT-B/32 folder for `storyreel eval`'s CLIPScore (same as --clip)",
    "RAY_ADDRESS": "the Ray cluster `render --ray` joins when --ray-address is not given",
    "NO_COLOR": "any value turns colours off (rich); output is never wrapped when it is not a terminal",
    "HF_TOKEN": "Hugging Face token for `storyreel models download` of a gated or private repository",
    "HF_HUB_OFFLINE": "1 forbids downloads (huggingface_hub); `storyreel models download` then fails",
}


def environment_help(*names: str) -> str:
    """An ``Environment:`` block for ``--help``, one line per variable (all of them when none are given)."""
    chosen = names or tuple(ENVIRONMENT)
    return "Environment:\n" + "\n".join(f"  {name}  {ENVIRONMENT[name]}" for name in chosen)
