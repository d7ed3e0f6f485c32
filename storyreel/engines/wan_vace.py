"""The ``wan-vace`` engine: diffusers' WanVACEPipeline (Wan2.1-VACE 1.3B or 14B) from a model folder.

* the cast, left to right, becomes one **reference image** per person: a face crop from the reference cache
  (:mod:`storyreel.reference_cache`, which explains the choice; a cast library member's in the library's);
  a shot without cast is plain text-to-video;
* size: the folder's native size in the orientation of the reel (832x480 or 480x832 for the released
  checkpoints), so vertical reels need no reframing; 4k+1 frames, at most 81, at 16 fps;
* prompt embeddings cached per prompt (:mod:`storyreel.engines.text_cache`); with
  :meth:`WanVaceEngine.prepare` every prompt of a batch is encoded first and, on a GPU with an offloading
  memory mode, UMT5 is then freed;
* sampler defaults from Wan's reference code: 50 steps, guidance 5.0, its default negative prompt; the
  first-block cache (``cache: {kind: first_block, ...}``, ``--cache-threshold``) through diffusers' hooks;
* memory modes as for Ingredients (:func:`storyreel.models.wan_vace.load_pipeline`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from storyreel.engines.base import RenderResult, StepProgress, peak_memory
from storyreel.engines.model_engine import ModelEngine
from storyreel.engines.text_cache import Embeddings, TextEmbeddingCache
from storyreel.engines.video import write_model_frames
from storyreel.errors import StoryreelError
from storyreel.plan import EngineSpec
from storyreel.project import REFERENCES

if TYPE_CHECKING:
    from PIL import Image

    from storyreel.plan import RenderJob
    from storyreel.project import Project

ENGINE_NAME = "wan-vace"
ENGINE_VERSION = "1"  # bump when this engine's use of the pipeline changes the pixels
FRAME_MULTIPLE = 4  # Wan's VAE compresses time 4x: 4k+1 frames
MAX_SEQUENCE_LENGTH = 512  # Wan's text_len
DEFAULT_STEPS = 50
DEFAULT_GUIDANCE = 5.0
DEFAULT_NEGATIVE_PROMPT = (
    "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，JPEG压缩残留，"
    "丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，手指融合，"
    "静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走"
)
"""Wan 2.1's ``sample_neg_prompt`` (its shared config), used when a shot and the story set none."""


def model_spec(model_dir: Path) -> EngineSpec:
    """Native size (landscape; jobs take the reel's orientation), frame rules and revision of a folder, from
    its files (no weights loaded)."""
    from storyreel.models.wan_vace import model_revision, native_format, require_complete

    require_complete(model_dir)
    native = native_format(model_dir)
    return EngineSpec(
        name=ENGINE_NAME,
        version=ENGINE_VERSION,
        fps=native.fps,
        width=native.width,
        height=native.height,
        max_frames=native.max_frames,
        frame_multiple=FRAME_MULTIPLE,
        model_revision=model_revision(model_dir),
        generative=True,
        min_cast=0,
        orientable=True,
        guidance=DEFAULT_GUIDANCE,
        router=False,
        caches=("first_block",),
    )


@contextlib.contextmanager
def first_block_cache(transformer, spec: dict | None) -> Iterator[None]:
    """diffusers' first-block cache of a job's ``cache`` spec on ``transformer`` for the duration of the block
    (none when None; the planner allows no other kind for this engine)."""
    if spec is None:
        yield
        return
    from diffusers.hooks import FirstBlockCacheConfig

    options = {name: value for name, value in spec.items() if name != "kind"}
    transformer.enable_cache(FirstBlockCacheConfig(**options))
    try:
        yield
    finally:
        transformer.disable_cache()


class WanVaceEngine(ModelEngine):
    """Renders jobs with the Wan VACE folder ``model_dir`` on ``device`` (default: CUDA if present)."""

    name = ENGINE_NAME
    version = ENGINE_VERSION

    def read_spec(self) -> EngineSpec:
        return model_spec(self.model_dir)

    def versions(self) -> dict[str, str]:
        from storyreel.models.wan_vace import read_record

        record = read_record(self.model_dir)
        return {**super().versions(), "variant": record.variant if record else "unrecorded"}

    def load(self) -> None:
        if self.pipe is not None:
            return
        from storyreel.models.wan_vace import load_pipeline

        started = time.perf_counter()
        self.choose_device()
        self.pipe = load_pipeline(self.model_dir, device=self.device, dtype=self.dtype, memory=self.memory)
        self._texts = TextEmbeddingCache(self.spec().model_revision or "", MAX_SEQUENCE_LENGTH, self.dtype)
        self.load_seconds = time.perf_counter() - started

    # ------------------------------------------------------------------------------------------ text

    def _encode(self, prompt: str, negative: str) -> Embeddings:
        assert self.pipe is not None
        return self.pipe.encode_prompt(
            prompt=prompt,
            negative_prompt=negative,
            do_classifier_free_guidance=True,
            num_videos_per_prompt=1,
            max_sequence_length=MAX_SEQUENCE_LENGTH,
            device=self.device,
            dtype=self.dtype,
        )

    def text_embeddings(self, job: RenderJob, project: Project) -> Embeddings:
        """The job's (prompt, negative prompt) embeddings, from the cache when possible."""
        self.load()
        assert self._texts is not None
        return self._texts.get(project.text_cache_dir, job.prompt, self._negative(job), self._encode)

    @staticmethod
    def _negative(job: RenderJob) -> str:
        return job.negative_prompt if job.negative_prompt is not None else DEFAULT_NEGATIVE_PROMPT

    def prepare(self, work: Iterable[tuple[RenderJob, Project]]) -> None:
        """Encode every prompt and crop every person of a batch up front (into the project caches); on a GPU
        with offloading, then free the UMT5 encoder. A job whose people cannot be cropped (no face found,
        say) is left to its render, which reports the error for that shot."""
        from storyreel.models.wan_vace import free_text_encoder

        self.load()
        for job, project in work:
            self.text_embeddings(job, project)
            with contextlib.suppress(StoryreelError):
                self.references(job, project)
        assert self.pipe is not None and self.device is not None
        if self.device.type == "cuda" and self.memory != "none" and self.pipe.text_encoder is not None:
            free_text_encoder(self.pipe)

    def cache_files(self, job: RenderJob, project: Project) -> list[Path]:
        """The cache files rendering ``job`` reads: each photo's reference crop (in the project's cache, or
        the person's own: ``job.cast_caches``) and the prompt's embeddings (named from the job alone; they
        need not exist yet). A Ray render ships them."""
        from storyreel.reference_cache import ReferenceCache

        self.load()
        assert self._texts is not None
        files = [
            path
            for name in job.cast
            for sha, token in zip(job.photo_hashes[name], job.faces[name], strict=True)
            for path in ReferenceCache(job.cache_dir(name, project.cache_dir) / REFERENCES).entry_files(
                sha, token
            )
        ]
        return [*files, *self._texts.entry_files(project.text_cache_dir, job.prompt, self._negative(job))]

    # ------------------------------------------------------------------------------------ references

    def references(self, job: RenderJob, project: Project) -> tuple[list[Image.Image], dict[str, int]]:
        """The job's people, left to right, as reference images (each person's photo chosen as
        ``job.combine`` says), and the reference cache's hit and miss counts."""
        from storyreel.reference_cache import ReferenceCache

        modes = job.combine or dict.fromkeys(job.cast, "mean")
        caches: dict[Path, ReferenceCache] = {}
        images = []
        for name in job.cast:
            folder = job.cache_dir(name, project.cache_dir) / REFERENCES
            cache = caches.setdefault(folder, ReferenceCache(folder))
            images.append(cache.get_person(job.photos[name], job.face_choices(name), modes[name]))
        hits, misses = sum(c.hits for c in caches.values()), sum(c.misses for c in caches.values())
        return images, {"reference_cache_hits": hits, "reference_cache_misses": misses}

    # ---------------------------------------------------------------------------------------- render

    def render(
        self, job: RenderJob, output: Path, progress: StepProgress, *, project: Project
    ) -> RenderResult:
        import torch

        self.load()
        assert self.pipe is not None and self.device is not None
        started = time.perf_counter()
        references, cache_stats = self.references(job, project)
        prompt_embeds, negative_embeds = self.text_embeddings(job, project)
        prepared = time.perf_counter()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        steps = job.steps or DEFAULT_STEPS

        def on_step(pipe, step: int, timestep, tensors: dict) -> dict:
            progress(step + 1, steps)
            return tensors

        with first_block_cache(self.pipe.transformer, job.cache):
            result = self.pipe(
                reference_images=references or None,
                prompt_embeds=prompt_embeds.to(self.device),
                negative_prompt_embeds=negative_embeds.to(self.device),
                height=job.height,
                width=job.width,
                num_frames=job.frames,
                num_inference_steps=steps,
                guidance_scale=job.guidance if job.guidance is not None else DEFAULT_GUIDANCE,
                generator=torch.Generator("cpu").manual_seed(job.seed),
                output_type="np",
                callback_on_step_end=on_step,
                max_sequence_length=MAX_SEQUENCE_LENGTH,
            )
        generated = time.perf_counter()
        count, width, height = write_model_frames(result.frames[0], output, job.fps)
        done = time.perf_counter()
        peak, kind = peak_memory(self.device)
        return RenderResult(
            frames=count,
            fps=job.fps,
            width=width,
            height=height,
            seconds=done - started,
            peak_memory_bytes=peak,
            peak_memory_kind=kind,
            timings={
                "references_and_text": prepared - started,
                "denoise_and_decode": generated - prepared,
                "encode": done - generated,
            },
            details={**cache_stats, "references": len(references)},
        )
