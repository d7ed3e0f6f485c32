"""The ``ingredients`` engine: the full IngredientsPipeline from a model folder, loaded once per process.

* identities from the project's identity cache (``IdentityCache``; a cast library member's from the
  library's, as ``job.cast_caches`` says), built by the folder's face encoder,
  each person's photos combined as the job says (``combine: mean | best | first`` in story.yaml);
* prompt embeddings cached per prompt in memory and on disk (:mod:`storyreel.engines.text_cache`); with
  :meth:`IngredientsEngine.prepare` every prompt of a batch is encoded first and, on a GPU with an
  offloading memory mode, the T5 encoder is then freed;
* memory modes (``auto``/``none``/``model_offload``/``group_offload``), the guidance routing and the step
  cache of each job are passed to the pipeline; per-step progress comes from ``callback_on_step_end``;
* the model generates its trained frame count (``sample_frames``, 49 released; ``num_frames=None``) and the
  clip keeps the job's first ``frames`` (or, with ``model_frames: shot``, generates exactly those);
* with ``context_parallel`` (``render --gpus N --parallel shot``) every process of the launch holds the
  pipeline on its GPU and renders each shot together with the others (``ingredients_model.parallel``);
* frames are written at the model's fps (8) as H.264 yuv420p through an ffmpeg pipe.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from storyreel.engines.base import RenderResult, StepProgress, peak_memory
from storyreel.engines.model_engine import ModelEngine
from storyreel.engines.text_cache import Embeddings, TextEmbeddingCache
from storyreel.engines.video import write_model_frames
from storyreel.errors import StoryreelError
from storyreel.plan import EngineSpec
from storyreel.project import IDENTITIES

if TYPE_CHECKING:
    from ingredients_model.faces import IdentityEmbedding
    from storyreel.plan import RenderJob
    from storyreel.project import Project

ENGINE_VERSION = "3"  # bump when this engine's use of the pipeline changes the pixels


def _read_config(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise StoryreelError(
            f"cannot read {path}: {err}",
            hint=f"check the model folder with `storyreel doctor --model {path.parent.parent}`",
        ) from err


def model_spec(model_dir: Path) -> EngineSpec:
    """Native size, frame limits and revision of a model folder, from its configs (no weights loaded)."""
    from ingredients_model import released
    from ingredients_model.caching import CACHE_KINDS
    from ingredients_model.checkpoint import model_revision, require_complete, transformer_subfolder

    if not Path(model_dir).is_dir():
        raise StoryreelError(
            f"model folder {model_dir} does not exist",
            hint=f"get the weights with `storyreel models download {model_dir}` "
            f"(about {released.DOWNLOAD_GB} GB), "
            f"or a tiny random test model with `storyreel models tiny {model_dir}`",
        )
    require_complete(model_dir)
    transformer = _read_config(model_dir / transformer_subfolder(model_dir) / "config.json")
    vae = _read_config(model_dir / "vae" / "config.json")
    spatial = 2 ** (len(vae.get("block_out_channels", (128, 256, 256, 512))) - 1)
    trained_frames = transformer.get("sample_frames", released.MAX_FRAMES)
    return EngineSpec(
        name="ingredients",
        version=ENGINE_VERSION,
        fps=released.FPS,
        width=transformer["sample_width"] * spatial,
        height=transformer["sample_height"] * spatial,
        max_frames=trained_frames,
        # odd latent counts only: 2k latents decode to 8k frames (IngredientsPipeline.frame_multiple)
        frame_multiple=2 * vae.get("temporal_compression_ratio", 4),
        native_frames=trained_frames,
        caches=tuple(CACHE_KINDS),
        model_revision=model_revision(model_dir),
        generative=True,
        min_cast=1,
        guidance=released.GUIDANCE,
    )


class IngredientsEngine(ModelEngine):
    """Renders jobs with the Ingredients model of ``model_dir`` on ``device`` (default: CUDA if present).

    ``context_parallel``: this process is one of several (an initialised process group) that render each
    shot together, the clip's tokens split over their GPUs; each holds the whole model on its GPU (memory
    mode ``none``, whatever ``memory`` says), and every process must render the same jobs in the same
    order."""

    name = "ingredients"
    version = ENGINE_VERSION

    def __init__(
        self,
        model_dir: Path,
        *,
        device: str | None = None,
        memory: str = "auto",
        context_parallel: bool = False,
    ):
        super().__init__(model_dir, device=device, memory="none" if context_parallel else memory)
        self.context_parallel = context_parallel
        self.encoder = None

    def read_spec(self) -> EngineSpec:
        return model_spec(self.model_dir)

    def versions(self) -> dict[str, str]:
        import torch

        import ingredients_model

        found = {**super().versions(), "ingredients_model": ingredients_model.__version__}
        if self.encoder is not None:
            found["face_encoder"] = self.encoder.fingerprint
        if self.context_parallel:
            found["context_parallel"] = str(torch.distributed.get_world_size())
        return found

    def load(self) -> None:
        if self.pipe is not None:
            return
        from ingredients_model.checkpoint import load_pipeline
        from ingredients_model.faces import load_face_encoder

        started = time.perf_counter()
        spec = self.spec()
        self.choose_device()
        self.pipe = load_pipeline(self.model_dir, device=self.device, dtype=self.dtype, memory=self.memory)
        self.pipe.set_progress_bar_config(disable=True)
        if self.context_parallel:
            from ingredients_model.errors import IngredientsError
            from ingredients_model.parallel import enable_context_parallel

            try:
                enable_context_parallel(self.pipe)
            except IngredientsError as err:
                raise StoryreelError.from_error(err, "--parallel shot: ") from err
        self.encoder = load_face_encoder(self.model_dir / "face_encoder", device=self.device)
        max_len = self.pipe.transformer.config.max_text_seq_length
        self._texts = TextEmbeddingCache(
            spec.model_revision or "", max_len, self.dtype, check=self._check_embeddings
        )
        self.load_seconds = time.perf_counter() - started

    # ------------------------------------------------------------------------------------------ text

    def _encode(self, prompt: str, negative: str) -> Embeddings:
        assert self.pipe is not None and self._texts is not None
        return self.pipe.encode_prompt(
            prompt=prompt,
            negative_prompt=negative,
            do_classifier_free_guidance=True,
            num_videos_per_prompt=1,
            max_sequence_length=self._texts.max_sequence_length,
            device=self.device,
            dtype=self.dtype,
        )

    def _check_embeddings(self, embeddings: Embeddings) -> None:
        """Raise IngredientsError unless cached embeddings fit this model's transformer."""
        assert self.pipe is not None
        for name, embeds in zip(("prompt_embeds", "negative_prompt_embeds"), embeddings, strict=True):
            self.pipe.transformer.check_text_embeddings(embeds, name)

    def text_embeddings(self, job: RenderJob, project: Project) -> Embeddings:
        """The job's (prompt, negative prompt) embeddings, from the cache when possible."""
        assert self._texts is not None
        return self._texts.get(project.text_cache_dir, job.prompt, job.negative_prompt or "", self._encode)

    def prepare(self, work: Iterable[tuple[RenderJob, Project]]) -> None:
        """Encode every prompt and every person of a batch up front (into the project caches); on a GPU
        with offloading, then free the T5 encoder. A job whose people cannot be encoded (no face found,
        say) is left to its render, which reports the error for that shot."""
        self.load()
        for job, project in work:
            self.text_embeddings(job, project)
            with contextlib.suppress(StoryreelError):
                self.identities(job, project)
        assert self.pipe is not None and self.device is not None
        if self.device.type == "cuda" and self.memory != "none" and self.pipe.text_encoder is not None:
            self.pipe.free_text_encoder()

    # ------------------------------------------------------------------------------------ identities

    def identities(self, job: RenderJob, project: Project) -> tuple[list[IdentityEmbedding], dict[str, int]]:
        """The job's people, left to right, from the identity cache (each combined as ``job.combine``
        says), and the cache's hit and miss counts."""
        from storyreel.identity_cache import IdentityCache

        self.load()
        modes = job.combine or dict.fromkeys(job.cast, "mean")
        caches: dict[tuple[Path, str], IdentityCache] = {}
        people = []
        for name in job.cast:
            where = (job.cache_dir(name, project.cache_dir) / IDENTITIES, modes[name])
            cache = caches.setdefault(where, IdentityCache(where[0], combine=where[1]))
            people.append(cache.get_person(job.photos[name], job.face_choices(name), self.encoder))
        stats = {
            "identity_cache_hits": sum(cache.hits for cache in caches.values()),
            "identity_cache_misses": sum(cache.misses for cache in caches.values()),
        }
        return people, stats

    def cache_files(self, job: RenderJob, project: Project) -> list[Path]:
        """The cache files rendering ``job`` reads: each photo's identity entry (in the project's cache, or
        the person's own: ``job.cast_caches``) and the prompt's embeddings (named from the job alone;
        they need not exist yet). A Ray render ships them."""
        from storyreel.identity_cache import IdentityCache

        self.load()
        assert self.encoder is not None and self._texts is not None
        files = [
            path
            for name in job.cast
            for sha, token in zip(job.photo_hashes[name], job.faces[name], strict=True)
            for path in IdentityCache(job.cache_dir(name, project.cache_dir) / IDENTITIES).entry_files(
                sha, token, self.encoder.fingerprint
            )
        ]
        text = self._texts.entry_files(project.text_cache_dir, job.prompt, job.negative_prompt or "")
        return [*files, *text]

    # ---------------------------------------------------------------------------------------- render

    def render(
        self, job: RenderJob, output: Path, progress: StepProgress, *, project: Project
    ) -> RenderResult:
        import torch

        from ingredients_model import released

        self.load()
        assert self.pipe is not None and self.device is not None
        started = time.perf_counter()
        identities, cache_stats = self.identities(job, project)
        prompt_embeds, negative_embeds = self.text_embeddings(job, project)
        prepared = time.perf_counter()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        # unset sampler settings (never for planned model jobs) fall back to the pipeline's defaults
        sampler = {"num_inference_steps": job.steps, "guidance_scale": job.guidance}

        def on_step(pipe, step: int, timestep, tensors: dict) -> dict:
            progress(step + 1, pipe.num_timesteps)
            return tensors

        # the trained frame count is the pipeline's default (None): the released behaviour, then trimmed
        native = job.generated_frames == self.spec().native_frames
        result = self.pipe(
            identities=identities,
            height=job.height,
            width=job.width,
            num_frames=None if native else job.generated_frames,
            **{name: value for name, value in sampler.items() if value is not None},
            generator=torch.Generator("cpu").manual_seed(job.seed),
            prompt_embeds=prompt_embeds.to(self.device),
            negative_prompt_embeds=negative_embeds.to(self.device),
            output_type="np",
            callback_on_step_end=on_step,
            router_mode=job.router_mode,
            cfg_routing=job.cfg_routing or released.CFG_ROUTING,
            cache=job.cache,
            max_sequence_length=self.pipe.transformer.config.max_text_seq_length,
        )
        generated = time.perf_counter()
        count, width, height = write_model_frames(result.frames[0][: job.frames], output, job.fps)
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
                "identities_and_text": prepared - started,
                "denoise_and_decode": generated - prepared,
                "encode": done - generated,
            },
            details={**cache_stats, "generated_frames": int(result.frames[0].shape[0])},
        )
