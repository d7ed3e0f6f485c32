"""Training the Ingredients model: `prepare` (videos → cached latents, identities, masks), stage 1
(facial embedding alignment) and stage 2 (router fine-tuning), run with
`accelerate launch -m ingredients_model.training {prepare,stage1,stage2,export} --config cfg.yaml`.

Example configs: `ingredients_model/training/configs/`.
"""
