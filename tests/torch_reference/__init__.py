"""An independent torch reference of upstream ACE-Step's task paths, for the parity tests.

Written from ``acestep/pipeline_ace_step.py`` and ``acestep/schedulers``/``acestep/apg_guidance.py``
/``acestep/music_dcae``; it drives the project's torch modules
(``lofi_export.reference.load_reference_models``) and never imports the runtime pipeline
(``lofi_daemon.pipeline``), so a shared mistake cannot pass unnoticed. Float32 on the CPU; every
random tensor is supplied by the caller.
"""
