"""Radio: one endless station of continued music, played back without gaps.

The data path, from a station's settings to what the listener hears:

1. **plan** (:mod:`lofi_daemon.radio.plan`, pure, no I/O) decides what comes next: the first
   segment is text2music, each later *generated* segment is an ``extend`` of the previous one
   (its source is the last context frames of the previous generation's latents), and when
   generation falls behind the playhead it asks for a *library* fill (an excerpt of a cached
   track) instead.
2. **jobs**: the service runs each planned generation in the daemon's queue at background
   priority; the engine writes the full extend output (float WAV) and its latents.
3. **render** (:mod:`lofi_daemon.radio.render`, :mod:`lofi_daemon.radio.joins`) cuts that output
   into the segment's file: it starts with an equal-power crossfade from the audio the previous
   file held back and holds back its own last seconds for the next join, so consecutive files
   are one continuous stream.
4. **files**: each segment is written as a 16-bit FLAC cache track; ``save``
   (:mod:`lofi_daemon.radio.save`) concatenates them exactly into one file.
5. **player**: the editor appends the files to one long-lived (gapless) player as they arrive.

Audio in this package is numpy float32 ``[samples, channels]`` (soundfile's order), 48 kHz stereo.
"""
