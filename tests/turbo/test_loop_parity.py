"""The runtime's numpy turbo sampler against the reference loop, both driven by the same DiT.

The velocity is the reference torch DiT (``tests/torch_reference/turbo/dit.py``) on the tiny
checkpoint's weights, so only the sampling differs: the runtime's schedule table, its float32
step arithmetic and its host-side even padding (``schedule.dit_velocity``) against upstream
``generate_audio`` (tensor schedule, ``dt * ones``, last step ``x0 = x - v·t``) with the padding
inside the DiT forward.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch_reference.turbo.dit import dit_forward
from torch_reference.turbo.pipeline import SHIFT_TIMESTEPS, context_latents, turbo_loop
from torch_reference.turbo.weights import Checkpoint, load_checkpoint

from lofi_daemon.turbo.schedule import dit_velocity, euler, timesteps

TOLERANCE = 1e-5  # max |a - b| relative to max(1, max |reference|)
FRAMES = 37  # odd on purpose: the runtime pads on the host, upstream inside the forward


@pytest.fixture(scope="module")
def ck(turbo_checkpoint: Path) -> Checkpoint:
    return load_checkpoint(turbo_checkpoint)


@pytest.mark.parametrize("shift", [1, 2, 3])
def test_schedule_is_upstreams_table_in_float32(shift: int) -> None:
    want = torch.tensor(SHIFT_TIMESTEPS[float(shift)], dtype=torch.float32).tolist()
    assert list(timesteps(shift)) == want


@pytest.mark.parametrize("shift", [1, 2, 3])
def test_numpy_loop_matches_the_reference_loop(ck: Checkpoint, shift: int) -> None:
    rng = np.random.default_rng(7 + shift)
    channels = ck.silence_latent.shape[-1]
    hidden = int(ck.dit_config["hidden_size"])
    noise = rng.standard_normal((1, FRAMES, channels), dtype=np.float32)
    enc = torch.from_numpy(rng.standard_normal((1, 13, hidden), dtype=np.float32))
    context = context_latents(ck, FRAMES)

    with torch.no_grad():
        want = turbo_loop(
            lambda x, t: dit_forward(ck, x, t, enc, context), torch.from_numpy(noise), shift
        ).numpy()

    def run(feeds: dict[str, np.ndarray]) -> np.ndarray:
        assert feeds["hidden_states"].shape[1] % 2 == 0
        with torch.no_grad():
            v = dit_forward(
                ck,
                torch.from_numpy(feeds["hidden_states"]),
                torch.from_numpy(feeds["timestep"]),
                torch.from_numpy(feeds["encoder_hidden_states"]),
                torch.from_numpy(feeds["context_latents"]),
            )
        return v.numpy()

    got = euler(noise, timesteps(shift), dit_velocity(run, enc.numpy(), context.numpy()))
    assert got.shape == want.shape == (1, FRAMES, channels)
    assert got.dtype == np.float32
    err = float(np.max(np.abs(got - want)))
    assert err <= TOLERANCE * max(1.0, float(np.max(np.abs(want)))), f"max |diff| {err:.3g}"
