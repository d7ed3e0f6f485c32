"""IngredientsPipeline: prompt + N people → video frames (CogVideoX-5B-I2V + identity modules + ID router).

Built on diffusers' ConsisIDPipeline (T5 prompt encoding, VAE image latents, rotary embeddings, CogVideoX DPM
scheduler loop) and accepting its arguments with their meaning: the global composite of the aligned faces is
the I2V image, the people's identity features are encoded once per call and shared by every step and both
classifier-free-guidance halves.

Saved folders name ``ConsisIDPipeline`` (the diffusers class this one extends) in ``model_index.json`` and the
transformer as ``["ingredients_model.transformer", "IngredientsTransformer3DModel"]``, so
``DiffusionPipeline.from_pretrained`` resolves them without ``trust_remote_code`` once that module is imported
(it then builds diffusers' single-identity ConsisIDPipeline around our transformer);
``IngredientsPipeline.from_pretrained`` builds this class.
"""

from __future__ import annotations

import gc
import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import PIL.Image
import torch
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.models import AutoencoderKLCogVideoX
from diffusers.pipelines.consisid.pipeline_consisid import ConsisIDPipeline, retrieve_timesteps
from diffusers.schedulers import CogVideoXDPMScheduler
from diffusers.utils import BaseOutput
from transformers import T5EncoderModel, T5Tokenizer

from ingredients_model import released
from ingredients_model.caching import CacheSpec, cache_config, step_cache
from ingredients_model.errors import IngredientsError
from ingredients_model.router import DEFAULT_CFG_ROUTING, check_cfg_routing
from ingredients_model.transformer import IngredientsTransformer3DModel

__all__ = ["DEFAULT_FPS", "IngredientsPipeline", "IngredientsPipelineOutput"]

logger = logging.getLogger(__name__)

DEFAULT_FPS = released.FPS
"""Frame rate the released model was trained at (49 frames = 6 s)."""


@dataclass
class IngredientsPipelineOutput(BaseOutput):
    """``frames``: np.ndarray ``[B, F, H, W, 3]`` in [0, 1] (``np``), list of lists of PIL images (``pil``),
    tensor ``[B, F, 3, H, W]`` (``pt``) or latents ``[B, F_latent, C, H/8, W/8]`` (``latent``)."""

    frames: Any


def _onload(module: torch.nn.Module) -> None:
    """Move a model-CPU-offloaded module to its execution device before calling a method other than forward
    (what diffusers' ``apply_forward_hook`` does for ``vae.encode``/``decode``)."""
    hook = getattr(module, "_hf_hook", None)
    if hook is not None and hasattr(hook, "pre_forward"):
        hook.pre_forward(module)


class IngredientsPipeline(ConsisIDPipeline):
    """Multi-identity image-to-video pipeline.

    Components: tokenizer, text_encoder (optional: without it, pass ``prompt_embeds``), vae, transformer
    (``IngredientsTransformer3DModel``), scheduler. Identities are ``faces.IdentityEmbedding``s, one per
    person, left to right on screen.
    """

    _optional_components: ClassVar[list[str]] = ["text_encoder"]

    def __init__(
        self,
        tokenizer: T5Tokenizer,
        text_encoder: T5EncoderModel | None,
        vae: AutoencoderKLCogVideoX,
        transformer: IngredientsTransformer3DModel,
        scheduler: CogVideoXDPMScheduler,
    ):
        super().__init__(
            tokenizer=tokenizer,
            text_encoder=text_encoder,
            vae=vae,
            transformer=transformer,
            scheduler=scheduler,
        )

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, **kwargs: Any) -> IngredientsPipeline:
        """diffusers ``from_pretrained``; for a local folder the transformer is always loaded as an
        ``IngredientsTransformer3DModel`` (whatever ``model_index.json`` names), from ``transformer_ema/``
        when the folder has one, as the released inference code does (``checkpoint.transformer_subfolder``).
        """
        from ingredients_model.checkpoint import transformer_subfolder

        folder = Path(pretrained_model_name_or_path)
        if "transformer" not in kwargs and folder.is_dir():
            dtype = {key: kwargs[key] for key in ("torch_dtype", "dtype") if key in kwargs}
            kwargs["transformer"] = IngredientsTransformer3DModel.from_pretrained(
                folder / transformer_subfolder(folder), **dtype
            )
        return super().from_pretrained(pretrained_model_name_or_path, **kwargs)

    def to_json_string(self) -> str:
        """``model_index.json`` names ``ConsisIDPipeline``, the diffusers class this pipeline extends, so that
        ``DiffusionPipeline.from_pretrained`` resolves the folder without ``trust_remote_code``; components
        keep diffusers' own record (our transformer: ``ingredients_model.transformer``, resolved once that
        module is imported)."""
        index = json.loads(super().to_json_string())
        index["_class_name"] = ConsisIDPipeline.__name__
        return json.dumps(index, indent=2, sort_keys=True) + "\n"

    def free_text_encoder(self) -> None:
        """Drop the T5 encoder (about 9.5 GB in bf16) once every prompt is encoded; later calls need
        ``prompt_embeds`` (and ``negative_prompt_embeds`` when guidance is on). Its memory is released
        when the pipeline held the last reference (``memory="none"``); with offloading it waits on the CPU."""
        self.register_modules(text_encoder=None)
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    @torch.no_grad()
    def encode_prompt(
        self,
        prompt: str | list[str] | None,
        negative_prompt: str | list[str] | None = None,
        do_classifier_free_guidance: bool = True,
        num_videos_per_prompt: int = 1,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        max_sequence_length: int = 226,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Encode prompt (and negative prompt, "" by default, for guidance) with T5, as CogVideoX does.

        Returns ``(prompt_embeds, negative_prompt_embeds)``, each ``[B, max_sequence_length, text_dim]``;
        callers may cache them and pass them back to ``__call__``.
        """
        needs_text = prompt_embeds is None or (do_classifier_free_guidance and negative_prompt_embeds is None)
        if needs_text and self.text_encoder is None:
            raise IngredientsError(
                "This pipeline has no text encoder (it was freed with free_text_encoder() or loaded without "
                "one), so prompt text cannot be encoded.",
                hint="Pass prompt_embeds (and negative_prompt_embeds when guidance_scale > 1), encoded by a "
                "pipeline that has the text encoder (pipe.encode_prompt).",
            )
        return super().encode_prompt(
            prompt=prompt,
            negative_prompt=negative_prompt,
            do_classifier_free_guidance=do_classifier_free_guidance,
            num_videos_per_prompt=num_videos_per_prompt,
            prompt_embeds=prompt_embeds,
            negative_prompt_embeds=negative_prompt_embeds,
            max_sequence_length=max_sequence_length,
            device=device,
            dtype=dtype,
        )

    def _identity_inputs(self, identities, id_cond, id_vit_hidden) -> tuple[list, list]:
        if id_cond is not None or id_vit_hidden is not None:
            if id_cond is None or id_vit_hidden is None or len(id_cond) != len(id_vit_hidden):
                raise IngredientsError(
                    "id_cond and id_vit_hidden must be given together, one entry per person.",
                    hint="Pass identities=[IdentityEmbedding, ...] instead of raw features.",
                )
            if identities:
                raise IngredientsError("Pass either identities or id_cond/id_vit_hidden, not both.")
            return list(id_cond), [list(scales) for scales in id_vit_hidden]
        if not identities:
            raise IngredientsError(
                "The Ingredients model needs at least one person to condition on.",
                hint="Pass identities=[face_encoder.encode(photo), ...] (left to right on screen).",
            )
        return (
            [e.id_cond.reshape(1, -1) for e in identities],
            [[h.reshape(1, *h.shape[-2:]) for h in e.id_vit_hidden] for e in identities],
        )

    @property
    def frame_multiple(self) -> int:
        """Valid frame counts are ``frame_multiple * k + 1`` (8k + 1 released: 1, 9, ..., 49).

        The VAE compresses time 4x, and CogVideoX's VAE decodes an even number of latent frames to 4x as
        many frames (2 latents → 8 frames, not 5), so the latent frame count must be odd.
        """
        return 2 * self.vae_scale_factor_temporal

    def frame_count(self, num_frames: int | None) -> int:
        """The frame count a call renders for ``num_frames`` (default: the transformer's ``sample_frames``).

        Counts that are not ``frame_multiple * k + 1`` are rounded down to one that is, with a warning, as
        diffusers' video pipelines do (at least 1). A count other than ``sample_frames`` (49 released) logs a
        warning when the transformer has learned positional embeddings: they were trained for that count only,
        and for any other diffusers' patch embedding uses sin/cos positional embeddings the weights never saw.
        More than ``sample_frames`` frames raise IngredientsError, as in the released code.
        """
        trained = self.transformer.config.sample_frames
        if num_frames is None:
            return trained
        step = self.frame_multiple
        if (num_frames - 1) % step:
            rounded = max(num_frames // step * step + 1, 1)
            logger.warning(
                "num_frames=%d is not %d*k + 1 (the VAE's time compression); rendering %d frames instead.",
                num_frames,
                step,
                rounded,
            )
            num_frames = rounded
        if num_frames > trained:
            raise IngredientsError(
                f"num_frames={num_frames} is more than the {trained} frames this transformer was trained "
                "for.",
                hint=f"Render {trained} frames and retime the clip to the length you need.",
            )
        if num_frames != trained and self.transformer.config.use_learned_positional_embeddings:
            logger.warning(
                "num_frames=%d differs from the %d frames the transformer's learned positional embedding was "
                "trained for; the model then runs on sin/cos positional embeddings its weights never saw. "
                "Render %d frames and trim the clip for the released behaviour.",
                num_frames,
                trained,
                trained,
            )
        return num_frames

    def _check_size(self, height: int, width: int) -> None:
        config = self.transformer.config
        native = (
            config.sample_height * self.vae_scale_factor_spatial,
            config.sample_width * self.vae_scale_factor_spatial,
        )
        if config.use_learned_positional_embeddings and (height, width) != native:
            raise IngredientsError(
                f"This model renders {native[1]}x{native[0]} only (learned positional embeddings), "
                f"not {width}x{height}.",
                hint=f"Render at {native[1]}x{native[0]} and resize the clip afterwards.",
            )

    def _check_text_inputs(
        self,
        prompt_embeds: torch.Tensor | None,
        negative_prompt_embeds: torch.Tensor | None,
        max_sequence_length: int,
        do_cfg: bool,
    ) -> int:
        """Validate the text the transformer will receive; return the token count to encode prompts with.

        Embeddings actually given decide; ``max_sequence_length`` only applies to text this call encodes."""
        required = self.transformer.required_text_length
        for name, embeds in (
            ("prompt_embeds", prompt_embeds),
            ("negative_prompt_embeds", negative_prompt_embeds),
        ):
            if embeds is not None and (do_cfg or name == "prompt_embeds"):
                self.transformer.check_text_embeddings(embeds, name)
        if prompt_embeds is not None:
            return prompt_embeds.shape[1]
        if required is not None and max_sequence_length != required:
            raise IngredientsError(
                f"max_sequence_length={max_sequence_length}, but this transformer takes exactly {required} "
                "text tokens (max_text_seq_length).",
                hint=f"Use max_sequence_length={required}.",
            )
        return max_sequence_length

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        identities: Sequence[Any] | None = None,
        image: PIL.Image.Image | None = None,
        negative_prompt: str | list[str] | None = None,
        height: int | None = None,
        width: int | None = None,
        num_frames: int | None = None,
        num_inference_steps: int = released.STEPS,
        guidance_scale: float = released.GUIDANCE,
        use_dynamic_cfg: bool = False,
        num_videos_per_prompt: int = 1,
        eta: float = 0.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        output_type: str = "np",
        return_dict: bool = True,
        attention_kwargs: dict[str, Any] | None = None,
        callback_on_step_end: Callable[..., dict] | PipelineCallback | MultiPipelineCallbacks | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
        router_mode: str | None = None,
        local_face_scale: float | None = None,
        cfg_routing: str = DEFAULT_CFG_ROUTING,
        cache_threshold: float | None = None,
        cache: CacheSpec | None = None,
        max_sequence_length: int = 226,
        id_cond: Sequence[torch.Tensor] | None = None,
        id_vit_hidden: Sequence[Sequence[torch.Tensor]] | None = None,
    ) -> IngredientsPipelineOutput | tuple:
        """Generate a video of ``identities`` (one ``IdentityEmbedding`` per person, left to right).

        image: the I2V conditioning image; by default the aligned faces composed on a white canvas.
        Defaults: native size of the model (released 720x480), ``sample_frames`` frames (49 at 8 fps; other
        counts are rounded and warned about, see ``frame_count``), 50 steps, guidance 6.0.

        As in diffusers' ConsisIDPipeline: ``use_dynamic_cfg`` (off, as released) raises the guidance over the
        steps with CogVideoX's cosine schedule; ``num_videos_per_prompt`` videos per prompt (one noise draw
        each); ``eta`` goes to the scheduler step; ``attention_kwargs`` to the transformer (``{"scale": s}``
        scales LoRA layers); ``max_sequence_length`` is the token count prompt text is encoded with (given
        ``prompt_embeds`` keep their own length, which the transformer checks).

        Ingredients settings: ``router_mode`` ("soft"/"hard") and ``local_face_scale`` override the
        transformer's run-time defaults for this call; ``cfg_routing`` ("released", default, or "per_branch")
        says how the face injection is computed under guidance (see ``router.CFG_ROUTINGS``);
        ``cache`` turns on a step cache for this call: ``{"kind": "first_block" | "mag" | "taylorseer", ...}``
        or a diffusers cache config (see ``ingredients_model.caching``; threshold 0 reproduces the uncached
        result); ``cache_threshold=x`` is short for ``cache={"kind": "first_block", "threshold": x}``.
        ``id_cond``/``id_vit_hidden`` replace ``identities`` with raw features (one ``[1, id_dim]`` tensor /
        one list of ``[1, tokens, vit_dim]`` tensors per person).
        """
        if isinstance(callback_on_step_end, PipelineCallback | MultiPipelineCallbacks):
            callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs
        callback_on_step_end_tensor_inputs = list(callback_on_step_end_tensor_inputs)
        if output_type not in ("np", "pil", "pt", "latent"):
            raise IngredientsError(f"Unknown output_type {output_type!r}.", hint="Use np, pil, pt or latent.")
        if not isinstance(num_videos_per_prompt, int) or num_videos_per_prompt < 1:
            raise IngredientsError(
                f"num_videos_per_prompt must be a positive integer, not {num_videos_per_prompt!r}."
            )
        cfg_routing = check_cfg_routing(cfg_routing)
        height = height or self.transformer.config.sample_height * self.vae_scale_factor_spatial
        width = width or self.transformer.config.sample_width * self.vae_scale_factor_spatial
        num_frames = self.frame_count(num_frames)
        self._check_size(height, width)
        cache = cache_config(cache, num_inference_steps, cache_threshold)  # checked before any work
        id_cond, id_vit_hidden = self._identity_inputs(identities, id_cond, id_vit_hidden)
        if image is None:
            if not identities:
                raise IngredientsError("Pass image= when identities are given as raw id_cond/id_vit_hidden.")
            from ingredients_model.faces import compose_identity_canvas

            image = compose_identity_canvas([e.aligned_face for e in identities], width=width, height=height)
        do_cfg = guidance_scale > 1.0
        max_sequence_length = self._check_text_inputs(
            prompt_embeds, negative_prompt_embeds, max_sequence_length, do_cfg
        )
        self.check_inputs(
            image=image,
            prompt=prompt,
            height=height,
            width=width,
            negative_prompt=negative_prompt,
            callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs,
            latents=latents,
            prompt_embeds=prompt_embeds,
            negative_prompt_embeds=negative_prompt_embeds,
        )
        self._guidance_scale = guidance_scale
        self._attention_kwargs = attention_kwargs
        self._interrupt = False
        if prompt is not None:
            batch_size = 1 if isinstance(prompt, str) else len(prompt)
        else:
            batch_size = prompt_embeds.shape[0]
        num_videos = batch_size * num_videos_per_prompt
        if isinstance(generator, list) and len(generator) != num_videos:
            raise IngredientsError(
                f"Got {len(generator)} generators for {num_videos} videos.",
                hint="Pass one generator, or one per video (prompts x num_videos_per_prompt).",
            )
        device = self._execution_device
        dtype = self.transformer.dtype

        # 1. text: [unconditional, conditional] in one batch, as the released pipeline does
        prompt_embeds, negative_prompt_embeds = self.encode_prompt(
            prompt=prompt,
            negative_prompt=negative_prompt,
            do_classifier_free_guidance=do_cfg,
            prompt_embeds=prompt_embeds,
            negative_prompt_embeds=negative_prompt_embeds,
            max_sequence_length=max_sequence_length,
            device=device,
        )
        prompt_embeds = prompt_embeds.to(device, dtype).repeat_interleave(num_videos_per_prompt, dim=0)
        if do_cfg:
            negative_prompt_embeds = negative_prompt_embeds.to(device, dtype)
            negative_prompt_embeds = negative_prompt_embeds.repeat_interleave(num_videos_per_prompt, dim=0)
            prompt_embeds = torch.cat([negative_prompt_embeds, prompt_embeds], dim=0)

        # 2. timesteps, image latents (VAE), noise, rotary embeddings
        timesteps, num_inference_steps = retrieve_timesteps(self.scheduler, num_inference_steps, device)
        self._num_timesteps = len(timesteps)
        image = self.video_processor.preprocess(image, height=height, width=width).to(device, dtype=dtype)
        if image.shape[0] not in (1, batch_size):
            raise IngredientsError(
                f"Got {image.shape[0]} conditioning images for {batch_size} prompts.",
                hint="Pass one image for all prompts or one per prompt.",
            )
        image = image.expand(batch_size, -1, -1, -1).repeat_interleave(num_videos_per_prompt, dim=0)
        latents, image_latents = self.prepare_latents(
            image,
            num_videos,
            self.transformer.config.in_channels // 2,
            num_frames,
            height,
            width,
            dtype,
            device,
            generator,
            latents,
        )
        extra_step_kwargs = self.prepare_extra_step_kwargs(generator, eta)
        image_rotary_emb = (
            self._prepare_rotary_positional_embeddings(height, width, latents.size(1), device)
            if self.transformer.config.use_rotary_positional_embeddings
            else None
        )

        # 3. identities: timestep-independent features, encoded once for every step and both CFG halves
        _onload(self.transformer)  # after the VAE encode: model offload moves the transformer in once
        identity = self.transformer.encode_identities(
            [c.to(device, dtype) for c in id_cond],
            [[h.to(device, dtype) for h in scales] for scales in id_vit_hidden],
            attention_kwargs=attention_kwargs,
        )

        # 4. denoising loop
        with step_cache(self.transformer, cache, len(timesteps)):
            latents = self._denoise(
                latents,
                image_latents,
                prompt_embeds,
                negative_prompt_embeds,
                timesteps,
                identity,
                image_rotary_emb,
                extra_step_kwargs,
                do_cfg,
                use_dynamic_cfg,
                {
                    "router_mode": router_mode,
                    "local_face_scale": local_face_scale,
                    "cfg_routing": cfg_routing if do_cfg else None,
                    "attention_kwargs": attention_kwargs,
                },
                callback_on_step_end,
                callback_on_step_end_tensor_inputs,
            )

        if output_type == "latent":
            video = latents
        else:
            video = self.decode_latents(latents)
            video = self.video_processor.postprocess_video(video=video, output_type=output_type)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (video,)
        return IngredientsPipelineOutput(frames=video)

    def _denoise(
        self,
        latents,
        image_latents,
        prompt_embeds,
        negative_prompt_embeds,
        timesteps,
        identity,
        image_rotary_emb,
        extra_step_kwargs,
        do_cfg,
        use_dynamic_cfg,
        transformer_kwargs,
        callback_on_step_end,
        callback_on_step_end_tensor_inputs,
    ) -> torch.Tensor:
        old_pred_original_sample = None
        base_guidance, steps = self._guidance_scale, len(timesteps)
        with self.progress_bar(total=len(timesteps)) as progress_bar:
            for i, t in enumerate(timesteps):
                if self.interrupt:
                    continue
                latent_model_input = torch.cat([latents] * 2) if do_cfg else latents
                latent_model_input = self.scheduler.scale_model_input(latent_model_input, t)
                latent_image_input = torch.cat([image_latents] * 2) if do_cfg else image_latents
                latent_model_input = torch.cat([latent_model_input, latent_image_input], dim=2)
                timestep = t.expand(latent_model_input.shape[0])
                with self.transformer.cache_context("cond_uncond"):
                    noise_pred = self.transformer(
                        hidden_states=latent_model_input,
                        encoder_hidden_states=prompt_embeds,
                        timestep=timestep,
                        image_rotary_emb=image_rotary_emb,
                        identity=identity,
                        return_dict=False,
                        **transformer_kwargs,
                    )[0]
                noise_pred = noise_pred.float()
                if use_dynamic_cfg:  # CogVideoX's schedule, as in diffusers' ConsisIDPipeline
                    progress = ((steps - float(t)) / steps) ** 5.0
                    self._guidance_scale = 1 + base_guidance * (1 - math.cos(math.pi * progress)) / 2
                if do_cfg:
                    noise_pred_uncond, noise_pred_text = noise_pred.chunk(2)
                    noise_pred = noise_pred_uncond + self.guidance_scale * (
                        noise_pred_text - noise_pred_uncond
                    )
                if isinstance(self.scheduler, CogVideoXDPMScheduler):
                    latents, old_pred_original_sample = self.scheduler.step(
                        noise_pred,
                        old_pred_original_sample,
                        t,
                        timesteps[i - 1] if i > 0 else None,
                        latents,
                        **extra_step_kwargs,
                        return_dict=False,
                    )
                else:
                    latents = self.scheduler.step(
                        noise_pred, t, latents, **extra_step_kwargs, return_dict=False
                    )[0]
                latents = latents.to(prompt_embeds.dtype)
                if callback_on_step_end is not None:
                    available = {
                        "latents": latents,
                        "prompt_embeds": prompt_embeds,
                        "negative_prompt_embeds": negative_prompt_embeds,
                    }
                    callback_kwargs = {k: available[k] for k in callback_on_step_end_tensor_inputs}
                    outputs = callback_on_step_end(self, i, t, callback_kwargs) or {}
                    latents = outputs.pop("latents", latents)
                    prompt_embeds = outputs.pop("prompt_embeds", prompt_embeds)
                progress_bar.update()
        return latents
