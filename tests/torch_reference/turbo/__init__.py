"""An independent torch reference of upstream ACE-Step 1.5 turbo, for the 1.5 parity tests.

Written, functionally and from the checkpoint's own state dicts, from the upstream code a reader
can open: ``acestep/models/turbo/modeling_acestep_v15_turbo.py`` (``AceStepDiTModel``,
``AceStepLyricEncoder``, ``AceStepTimbreEncoder``, ``AceStepConditionEncoder``, ``pack_sequences``,
``create_4d_mask``, ``AceStepConditionGenerationModel.generate_audio``), the handler mixins under
``acestep/core/generation/handler/`` (``conditioning_text.py``, ``conditioning_embed.py``,
``conditioning_target.py``, ``metadata_utils.py``, ``prompt_utils.py``, ``vae_decode*.py``,
``generate_music_decode.py``), ``acestep/constants.py`` and ``acestep/audio_utils.py``; the Qwen3
text encoder follows transformers' ``Qwen3Model`` (causal, no attention mask), which the installed
transformers lacks, so it is written out here too. The VAE is diffusers' own
``AutoencoderOobleck`` built from ``vae/config.json``.

Independence is the point: nothing here imports the project's exporter modules
(``lofi_export``), the runtime (``lofi_daemon``) or the model contract
(``lofi_daemon.model.turbo_layout``). Numbers upstream hard-codes (the shift tables, 750 timbre
frames, 128 minimum frames, the prompt templates, chunk 256 / overlap 64, −1 dBFS) are hard-coded
here again, so a mistake shared with the runtime or the exporter cannot pass unnoticed.
Everything runs in float32 on the CPU (bf16 weights are widened on load); every random tensor is
supplied by the caller.
"""
