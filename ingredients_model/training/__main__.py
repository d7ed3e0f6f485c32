"""`accelerate launch -m ingredients_model.training {prepare,stage1,stage2,export} --config cfg.yaml`."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ingredients_model.errors import IngredientsError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ingredients_model.training", description=__doc__)
    parser.add_argument("command", choices=["prepare", "stage1", "stage2", "export"])
    parser.add_argument("--config", type=Path, required=True, help="YAML config (see training/configs/)")
    parser.add_argument(
        "--stage", choices=["stage1", "stage2"], help="export: which stage's config --config is"
    )
    parser.add_argument(
        "--checkpoint", type=Path, help="export: checkpoint-<step> folder (default: the latest)"
    )
    parser.add_argument(
        "--out", type=Path, help="export: output model folder (default: <output_dir>/exported)"
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        run(args)
    except IngredientsError as exc:
        if args.debug:
            raise
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return 1
    return 0


def run(args: argparse.Namespace) -> None:
    from ingredients_model.training.config import load_config

    if args.command == "prepare":
        from ingredients_model.training.prepare import run_prepare

        rows = run_prepare(load_config(args.config, "prepare"))
        print(f"prepared {len(rows)} clips")
    elif args.command in ("stage1", "stage2"):
        from ingredients_model.training.stage1 import run_stage1
        from ingredients_model.training.stage2 import run_stage2

        config = load_config(args.config, args.command)
        result = (run_stage1 if args.command == "stage1" else run_stage2)(config)
        print(
            f"{args.command}: step {result.step}, checkpoint {result.checkpoint}, exported {result.exported}"
        )
    else:
        export(args)


def export(args: argparse.Namespace) -> None:
    from ingredients_model.training.config import load_config
    from ingredients_model.training.export import export_model
    from ingredients_model.training.loop import latest_checkpoint

    if args.stage is None:
        raise IngredientsError(
            "export needs --stage stage1 or --stage stage2", "the stage whose config you pass"
        )
    config = load_config(args.config, args.stage)
    checkpoint = args.checkpoint or latest_checkpoint(config.output_dir / "checkpoints")
    out = export_model(config, checkpoint, args.out or config.output_dir / "exported", config.export_dtype)
    print(f"exported {out}")


if __name__ == "__main__":
    sys.exit(main())
