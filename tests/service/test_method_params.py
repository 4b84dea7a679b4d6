"""The shared JSON-RPC params checks (``lofi_daemon/service/method_params.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lofi_daemon import errors
from lofi_daemon.errors import LofiError
from lofi_daemon.paths import BACKEND
from lofi_daemon.service.install_jobs import SetupRequest
from lofi_daemon.service.method_params import (
    check_backend,
    check_params,
    metadata_fields,
    setup_request,
    track_id_param,
)


def refused(call: Any, *args: Any) -> LofiError:
    with pytest.raises(LofiError) as info:
        call(*args)
    return info.value


def test_check_params_names_the_unknown_ones() -> None:
    check_params({}, ("a",), "m")
    check_params({"a": 1}, ("a", "b"), "m")
    error = refused(check_params, {"a": 1, "zeta": 2, "beta": 3}, ("a",), "radio.like")
    assert error.code == errors.INVALID_PARAMS
    assert error.message == "radio.like does not take 'beta', 'zeta'"


def test_check_params_keeps_the_message_short() -> None:
    params = {f"name{n:02d}" + "x" * 100: n for n in range(9)}
    message = refused(check_params, params, (), "generate").message
    assert message.count("'name") == 5  # the first five, sorted
    assert "x" * 40 not in message  # each name cut to 40 characters
    assert len(message) < 300


def test_track_id_param() -> None:
    assert track_id_param({"track_id": "abc"}, "cancel") == "abc"  # unknown ids: the caller's
    for params in ({}, {"track_id": 5}, {"track_id": None}):
        error = refused(track_id_param, params, "tracks.delete")
        assert error.code == errors.INVALID_PARAMS
        assert error.message == "tracks.delete needs a string track_id"
    error = refused(track_id_param, {"track_id": "abc", "force": True}, "cancel")
    assert error.message == "cancel does not take 'force'"


def test_check_backend() -> None:
    check_backend(BACKEND)
    check_backend("ace-step-1.5")
    for other in ("musicgen", None, 3, "x" * 500):
        error = refused(check_backend, other)
        assert error.code == errors.INVALID_BACKEND
        assert "use one of ace-step, ace-step-1.5" in error.message and len(error.message) < 120


def test_metadata_fields() -> None:
    assert metadata_fields({}) == {}
    given = {"metadata": {"bpm": 90, "key": "A minor", "time_signature": 3}}
    assert metadata_fields(given) == {"bpm": 90, "keyscale": "A minor", "time_signature": 3}
    assert metadata_fields({"metadata": {"keyscale": "C major"}}) == {"keyscale": "C major"}


@pytest.mark.parametrize(
    ("params", "code", "message"),
    [
        (
            {"metadata": {"tempo": 90}},
            errors.INVALID_PARAMETER,
            "unknown metadata key 'tempo'; use bpm, key, time_signature",
        ),
        ({"metadata": [90]}, errors.INVALID_PARAMS, "metadata must be an object"),
        ({"metadata": {"bpm": 90}, "bpm": 80}, errors.INVALID_PARAMS, "bpm is given twice"),
        (
            {"metadata": {"key": "C major", "keyscale": "C major"}},
            errors.INVALID_PARAMS,
            "keyscale is given twice",
        ),
    ],
)
def test_metadata_fields_refuse(params: dict[str, Any], code: int, message: str) -> None:
    error = refused(metadata_fields, params)
    assert error.code == code and message in error.message


def test_setup_request_defaults_and_values() -> None:
    assert setup_request({"backend": BACKEND}) == SetupRequest(backend=BACKEND)
    request = setup_request(
        {"backend": BACKEND, "confirm": True, "force": True, "checkpoint": "~/ckpt"}
    )
    assert request == SetupRequest(
        backend=BACKEND, confirm=True, checkpoint=Path("~/ckpt").expanduser(), force=True
    )


@pytest.mark.parametrize(
    ("params", "code", "words"),
    [
        ({}, errors.INVALID_PARAMS, "setup needs a string backend"),
        ({"backend": 1}, errors.INVALID_PARAMS, "setup needs a string backend"),
        ({"backend": "other"}, errors.INVALID_BACKEND, "unknown backend 'other'"),
        ({"backend": BACKEND, "confirm": "yes"}, errors.INVALID_PARAMS, "confirm must be true"),
        ({"backend": BACKEND, "force": 1}, errors.INVALID_PARAMS, "force must be true"),
        ({"backend": BACKEND, "checkpoint": " "}, errors.INVALID_PARAMS, "checkpoint must be"),
        ({"backend": BACKEND, "checkpoint": 3}, errors.INVALID_PARAMS, "checkpoint must be"),
        ({"backend": BACKEND, "model": "x"}, errors.INVALID_PARAMS, "setup does not take"),
    ],
)
def test_setup_request_refuses(params: dict[str, Any], code: int, words: str) -> None:
    error = refused(setup_request, params)
    assert error.code == code
    assert words in error.message
