"""The released face preprocessing on the CPU, per photo, step by step:

    python benchmarks/face_preprocessing.py [--repeats 5]

Photos: insightface's t1.jpg (1280x886) and a 4000x3000 JPEG made from it (a phone photo's size). Steps:
loading (decode, EXIF, RGB, 1024 px INTER_LANCZOS4), the alignment to facexlib's 512 template, the ArcFace
input blob and a random 112 → 512 ArcFace ONNX graph (glintr100 itself is far larger), the EVA-CLIP input
(bicubic 336, normalised), and the two-person canvas. The released detector (RetinaFace) and EVA-CLIP
need weights that are not here: dlib's detector stands in for the detection and is timed separately.
Prints the median of each step in milliseconds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    import cv2
    import insightface
    import torch
    from PIL import Image

    from ingredients_model import face_preprocessing as fp
    from ingredients_model.face_tools import detector_rows
    from ingredients_model.faces import ArcFaceEmbedder, compose_identity_canvas
    from ingredients_model.photos import load_photo
    from tests.helpers.face_stand_ins import random_arcface_onnx

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    t1 = Path(insightface.__file__).parent / "data" / "images" / "t1.jpg"
    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / "phone.jpg"
        Image.open(t1).convert("RGB").resize((4000, 3000), Image.Resampling.BICUBIC).save(big, quality=92)
        onnx_path = Path(tmp) / "glintr100.onnx"
        random_arcface_onnx(onnx_path)
        arcface = ArcFaceEmbedder(onnx_path, "cpu")
        threads = f"torch {torch.get_num_threads()}, OpenCV {cv2.getNumThreads()}"
        print(f"CPU threads: {threads}; median of {args.repeats} runs, milliseconds")
        for name, path in (("t1.jpg 1280x886", t1), ("phone.jpg 4000x3000", big)):
            photo = load_photo(path)
            bgr = cv2.cvtColor(np.asarray(photo), cv2.COLOR_RGB2BGR)
            rows = detector_rows(bgr)
            detection = fp.detections_from_rows(rows)[fp.choose_face(fp.detections_from_rows(rows))]
            crop = fp.align_to_template(bgr, detection.landmarks)
            steps = {
                "load + downsize": lambda path=path: load_photo(path),
                "detect (dlib stand-in)": lambda bgr=bgr: detector_rows(bgr),
                "align 512": lambda bgr=bgr, d=detection: fp.align_to_template(bgr, d.landmarks),
                "ArcFace blob": lambda crop=crop: arcface.input_blob(crop),
                "ArcFace (random graph)": lambda crop=crop: arcface.embed_crop(crop),
                "EVA-CLIP input": lambda crop=crop: fp.clip_input(crop, 336),
            }
            timings = {step: median_ms(fn, args.repeats) for step, fn in steps.items()}
            ours = sum(
                v for k, v in timings.items() if k not in ("detect (dlib stand-in)", "ArcFace (random graph)")
            )
            print(f"{name}: " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
            print(f"  preprocessing without the networks: {ours:.1f} ms per photo")
        face = Image.fromarray(crop[:, :, ::-1])
        canvas_ms = median_ms(lambda: compose_identity_canvas([face, face]), args.repeats)
        print(f"two-person canvas: {canvas_ms:.1f} ms")


if __name__ == "__main__":
    main()
