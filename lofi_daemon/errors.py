"""One error contract for the engine, the CLI and the JSON-RPC daemon.

Every failure a user can meet is a :class:`LofiError` carrying a stable numeric code (the
JSON-RPC error code), a short name, a message that says what went wrong, and a remedy that
says what to do about it. The same numbers are mirrored in ``lua/lofi/errors.lua`` and listed
in ``docs/protocol.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

# JSON-RPC 2.0 standard codes.
PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603

# Application codes (the JSON-RPC "server error" range -32000..-32099).
MODEL_NOT_FOUND: Final = -32000
MODEL_LOAD_FAILED: Final = -32001
MODEL_DOWNLOAD_FAILED: Final = -32002
MODEL_INFERENCE_FAILED: Final = -32003
QUEUE_FULL: Final = -32004
INVALID_DURATION: Final = -32005
INVALID_PROMPT: Final = -32006
INVALID_BACKEND: Final = -32007
BACKEND_NOT_INSTALLED: Final = -32008
INVALID_INFERENCE_STEPS: Final = -32009
INVALID_GUIDANCE_SCALE: Final = -32010
INVALID_SCHEDULER: Final = -32011
INVALID_CFG_TYPE: Final = -32012
INVALID_PARAMETER: Final = -32013
TRACK_NOT_FOUND: Final = -32014
GENERATION_CANCELLED: Final = -32015
SETUP_FAILED: Final = -32016
INVALID_FORMAT: Final = -32017
OUTPUT_WRITE_FAILED: Final = -32018
INVALID_SOURCE: Final = -32019
RADIO_NOT_ACTIVE: Final = -32020


@dataclass(frozen=True)
class ErrorInfo:
    """A row of the error table: code, name, meaning and remedy."""

    code: int
    name: str
    meaning: str
    remedy: str


ERROR_TABLE: Final[tuple[ErrorInfo, ...]] = (
    ErrorInfo(
        PARSE_ERROR,
        "PARSE_ERROR",
        "The line is not valid JSON (or not UTF-8).",
        "Send one UTF-8 JSON object per line.",
    ),
    ErrorInfo(
        INVALID_REQUEST,
        "INVALID_REQUEST",
        "The message is not a JSON-RPC 2.0 request.",
        'Send an object with jsonrpc "2.0", a method string and an optional id.',
    ),
    ErrorInfo(
        METHOD_NOT_FOUND,
        "METHOD_NOT_FOUND",
        "The method does not exist.",
        "See docs/protocol.md for the list of methods.",
    ),
    ErrorInfo(
        INVALID_PARAMS,
        "INVALID_PARAMS",
        "A parameter has the wrong type or is unknown.",
        "Check the parameter names and types in docs/protocol.md.",
    ),
    ErrorInfo(
        INTERNAL_ERROR,
        "INTERNAL_ERROR",
        "An unexpected error inside the daemon.",
        "Look at the daemon log (:Lofi log) and report the bug.",
    ),
    ErrorInfo(
        MODEL_NOT_FOUND,
        "MODEL_NOT_FOUND",
        "The model files are not installed.",
        "Run :Lofi setup ace-step (or lofi-daemon setup ace-step).",
    ),
    ErrorInfo(
        MODEL_LOAD_FAILED,
        "MODEL_LOAD_FAILED",
        "A model file is corrupt or cannot be loaded by ONNX Runtime.",
        "Run :Lofi setup ace-step again to repair the installation.",
    ),
    ErrorInfo(
        MODEL_DOWNLOAD_FAILED,
        "MODEL_DOWNLOAD_FAILED",
        "Downloading the checkpoint failed.",
        "Check the network and run the setup again; it resumes where it stopped.",
    ),
    ErrorInfo(
        MODEL_INFERENCE_FAILED,
        "MODEL_INFERENCE_FAILED",
        "Running a model failed.",
        "Try provider=cpu or a shorter duration; see the daemon log.",
    ),
    ErrorInfo(
        QUEUE_FULL,
        "QUEUE_FULL",
        "Too many generations are queued.",
        "Wait for a track to finish or cancel one.",
    ),
    ErrorInfo(
        INVALID_DURATION,
        "INVALID_DURATION",
        "The duration is outside the backend's range.",
        "Ask for 5-240 seconds on ace-step, 5-600 seconds on ace-step-1.5.",
    ),
    ErrorInfo(
        INVALID_PROMPT,
        "INVALID_PROMPT",
        "The prompt is empty or longer than 1000 characters.",
        "Give a prompt of 1 to 1000 characters.",
    ),
    ErrorInfo(
        INVALID_BACKEND,
        "INVALID_BACKEND",
        "The backend name is unknown.",
        'Use the backend "ace-step" or "ace-step-1.5".',
    ),
    ErrorInfo(
        BACKEND_NOT_INSTALLED,
        "BACKEND_NOT_INSTALLED",
        "The backend is not installed.",
        "Run :Lofi setup ace-step.",
    ),
    ErrorInfo(
        INVALID_INFERENCE_STEPS,
        "INVALID_INFERENCE_STEPS",
        "infer_steps is not 1-200.",
        "Use between 1 and 200 steps (27 is fast, 60 is the reference default).",
    ),
    ErrorInfo(
        INVALID_GUIDANCE_SCALE,
        "INVALID_GUIDANCE_SCALE",
        "A guidance value is negative, NaN or infinite.",
        "Use a finite, non-negative guidance scale (15 is the default).",
    ),
    ErrorInfo(
        INVALID_SCHEDULER,
        "INVALID_SCHEDULER",
        "The scheduler is unknown.",
        "Use euler, heun or pingpong.",
    ),
    ErrorInfo(
        INVALID_CFG_TYPE,
        "INVALID_CFG_TYPE",
        "The guidance type is unknown.",
        "Use apg, cfg or cfg_star.",
    ),
    ErrorInfo(
        INVALID_PARAMETER,
        "INVALID_PARAMETER",
        "Another generation parameter is invalid.",
        "Read the message: it names the parameter and its valid range.",
    ),
    ErrorInfo(
        TRACK_NOT_FOUND, "TRACK_NOT_FOUND", "No such track id.", "List the tracks with tracks.list."
    ),
    ErrorInfo(
        GENERATION_CANCELLED,
        "GENERATION_CANCELLED",
        "The generation was cancelled.",
        "Nothing to do; generate again if you want the track.",
    ),
    ErrorInfo(
        SETUP_FAILED,
        "SETUP_FAILED",
        "Installing the models failed.",
        "Read the message; rerun the setup, which resumes an interrupted install.",
    ),
    ErrorInfo(
        INVALID_FORMAT, "INVALID_FORMAT", "The audio format is unknown.", "Use wav, flac or ogg."
    ),
    ErrorInfo(
        OUTPUT_WRITE_FAILED,
        "OUTPUT_WRITE_FAILED",
        "The audio file could not be written.",
        "Check free disk space and that the output folder is writable.",
    ),
    ErrorInfo(
        INVALID_SOURCE,
        "INVALID_SOURCE",
        "The source audio is missing, unreadable, not audio, or not about 5-240 seconds long (4.83 s at least).",
        "Give a mono or stereo audio file (wav, flac, ogg, mp3) of 5 to 240 seconds.",
    ),
    ErrorInfo(
        RADIO_NOT_ACTIVE,
        "RADIO_NOT_ACTIVE",
        "No radio station is running (or not the one named by station_id).",
        "Start one with radio.start (:Lofi radio); use the station_id it returned.",
    ),
)

_BY_CODE: Final = {row.code: row for row in ERROR_TABLE}


def error_info(code: int) -> ErrorInfo:
    """Return the table row for ``code`` (INTERNAL_ERROR for an unknown code)."""
    return _BY_CODE.get(code, _BY_CODE[INTERNAL_ERROR])


class LofiError(Exception):
    """An error with a stable code, a specific message and a remedy."""

    def __init__(
        self,
        code: int,
        message: str,
        *,
        remedy: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.remedy = remedy if remedy is not None else error_info(code).remedy
        self.data = dict(data or {})

    @property
    def name(self) -> str:
        return error_info(self.code).name

    def to_jsonrpc(self) -> dict[str, Any]:
        """The JSON-RPC ``error`` member for this error."""
        return {
            "code": self.code,
            "message": self.message,
            "data": {"name": self.name, "remedy": self.remedy, **self.data},
        }

    def __str__(self) -> str:
        return f"{self.name}: {self.message}"


class CancelledError(LofiError):
    """Raised inside the engine when a cancellation request is honoured."""

    def __init__(self, message: str = "generation cancelled") -> None:
        super().__init__(GENERATION_CANCELLED, message)


def first_line(exc: BaseException, limit: int) -> str:
    """The first line of ``exc``'s message, cut to ``limit`` characters; its type name if empty."""
    lines = str(exc).strip().splitlines()
    return lines[0][:limit] if lines else type(exc).__name__
