"""ACE-Step 1.5 turbo on the exporter side: torch modules, random checkpoints, loading.

Stable API (other exporter modules and tests build on these names and signatures):

* ``presets``: ``Qwen3Config``, ``AceStepConfig`` (frozen dataclasses, upstream field names,
  ``to_json_dict``/``from_json_dict``), ``TurboPreset(name, text, dit, vae)``, ``TINY``,
  ``FULL_PRESET``, ``PRESETS``, ``turbo_preset(name)``.
* ``qwen3.Qwen3TextEncoder(cfg: Qwen3Config)``: ``forward(input_ids [1, Lt]) -> [1, Lt, Dt]``.
* ``condition.ConditionEncoder(cfg: AceStepConfig)``: ``text_and_lyrics(text_hidden,
  lyric_embeds) -> (text_states, lyric_states)`` (also its ``forward``) and
  ``timbre(refer_latents [1, F, C]) -> [1, 1, H]``.
* ``dit.DiT(cfg: AceStepConfig)``: ``forward(hidden_states [1, T, C] (T even), timestep [1],
  encoder_hidden_states [1, S, H], context_latents [1, T, 2C]) -> velocity [1, T, C]``.
* ``checkpoint.write_turbo_checkpoint(out_dir, preset="tiny", seed=0)``: the official folder
  layout with random bf16 weights.
* ``load.load_turbo_modules(checkpoint_dir) -> TurboModules``: fp32 CPU eval modules.
* ``checkpoint_keys``: key -> shape maps of the three weight files and their exact byte sizes.

Module state dicts use the checkpoint's key names minus the file prefix (``decoder.``,
``encoder.``), so weights load with ``strict=True`` and no renaming.
"""
