"""``lofi-daemon serve`` on the command line: a real subcommand of the one ``lofi-daemon``
parser, with its flags, defaults, help, bad values, and the modules it loads."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lofi_daemon import __main__ as cli
from lofi_daemon.cli import serve
from lofi_daemon.cli.serve import ServeConfig, config_from_args
from lofi_daemon.paths import default_cache_dir, default_models_dir
from lofi_daemon.pipeline.residency import ResidencyConfig

ROOT = Path(__file__).resolve().parents[2]
FLAGS = [
    "--models",
    "--cache-dir",
    "--provider",
    "--threads",
    "--queue-limit",
    "--cache-max-bytes",
    "--keep-loaded",
    "--idle-unload",
    "--backend",
    "--log-level",
    "--log-file",
    "--log-stderr",
]
HEAVY = ("onnxruntime", "numpy", "soundfile", "torch", "lofi_export")


def parse(*argv: str) -> argparse.Namespace:
    return cli.build_parser().parse_args(list(argv))


def run_python(
    *args: str, stdin: str = "", timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    return subprocess.run(
        [sys.executable, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=env,
        check=False,
    )


def test_serve_is_a_subcommand_with_the_documented_defaults() -> None:
    args = parse("serve")
    assert args.command == "serve"
    assert config_from_args(args) == ServeConfig(
        models_dir=default_models_dir(),
        cache_dir=default_cache_dir(),
        provider="auto",
        threads=None,
        queue_limit=5,
        cache_max_bytes=2 * 1024**3,
        keep_loaded="auto",
        idle_unload_sec=600.0,
        log_level="INFO",
        log_stderr=False,
        log_file=None,
    )


def test_every_flag_reaches_the_config(tmp_path: Path) -> None:
    args = parse(
        "serve",
        "--models", str(tmp_path / "m"),
        "--cache-dir", str(tmp_path / "c"),
        "--provider", "cpu",
        "--threads", "3",
        "--queue-limit", "2",
        "--cache-max-bytes", "0",
        "--keep-loaded",
        "--idle-unload", "30",
        "--log-level", "warning",
        "--log-file", str(tmp_path / "d.log"),
        "--log-stderr",
        "--backend", "ace-step-1.5",
    )  # fmt: skip
    assert config_from_args(args) == ServeConfig(
        models_dir=tmp_path / "m",
        cache_dir=tmp_path / "c",
        provider="cpu",
        threads=3,
        queue_limit=2,
        cache_max_bytes=0,
        keep_loaded="true",  # a bare --keep-loaded, as the old flag
        idle_unload_sec=30.0,
        log_level="WARNING",
        log_stderr=True,
        log_file=tmp_path / "d.log",
        backend="ace-step-1.5",
    )


@pytest.mark.parametrize(
    ("argv", "mode"),
    [
        ([], "auto"),
        (["--keep-loaded"], "true"),
        (["--keep-loaded", "--threads", "2"], "true"),
        (["--keep-loaded", "FALSE"], "false"),
        (["--keep-loaded=auto"], "auto"),
    ],
)
def test_keep_loaded_takes_a_mode_or_stands_alone(argv: list[str], mode: str) -> None:
    config = config_from_args(parse("serve", *argv))
    assert config.keep_loaded == mode


def test_the_engine_gets_the_residency_settings(tmp_path: Path) -> None:
    args = parse("serve", "--models", str(tmp_path), "--keep-loaded", "auto", "--idle-unload", "5")
    engine: Any = serve._default_engine(config_from_args(args))
    assert engine.keep_loaded == ResidencyConfig("auto", 5.0)
    assert engine.residency_status()["idle_unload_sec"] == 5.0


def test_the_subcommand_and_serve_main_take_the_same_options(tmp_path: Path) -> None:
    argv = ["--models", str(tmp_path), "--threads", "2", "--log-level", "error"]
    from_tree = config_from_args(parse("serve", *argv))
    alone = config_from_args(serve.build_parser().parse_args(argv))
    assert from_tree == alone
    assert config_from_args(parse("serve")) == config_from_args(serve.build_parser().parse_args([]))


def test_models_dir_is_expanded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert config_from_args(parse("serve", "--models", "~/m")).models_dir == tmp_path / "m"


@pytest.mark.parametrize(
    ("argv", "level"),
    [
        ([], "INFO"),
        (["--log-level", "debug", "serve"], "DEBUG"),
        (["serve", "--log-level", "Warning"], "WARNING"),
        (["--log-level", "DEBUG", "serve", "--log-level", "ERROR"], "ERROR"),
    ],
)
def test_log_level_before_or_after_serve(argv: list[str], level: str) -> None:
    argv = argv or ["serve"]
    assert config_from_args(parse(*argv)).log_level == level


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--threads", "0"], "--threads: must be at least 1"),
        (["--threads", "two"], "--threads: not a whole number: 'two'"),
        (["--queue-limit", "0"], "--queue-limit: must be at least 1"),
        (["--cache-max-bytes", "-1"], "--cache-max-bytes: must not be negative"),
        (["--log-level", "loud"], "--log-level: invalid choice: 'LOUD'"),
        (["--backend", "musicgen"], "--backend: invalid choice: 'musicgen'"),
        (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
        (["--keep-loaded", "sometimes"], "--keep-loaded: use one of auto, true, false"),
        (["--idle-unload", "0"], "--idle-unload: must be above 0"),
        (["--idle-unload", "soon"], "--idle-unload: not a number of seconds: 'soon'"),
    ],
)
def test_bad_values_are_usage_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        parse("serve", *argv)
    assert info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "usage: lofi-daemon" in captured.err and message in captured.err


def test_main_hands_serve_to_run_serve(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[argparse.Namespace] = []

    def fake_run_serve(args: argparse.Namespace) -> int:
        seen.append(args)
        return 7

    monkeypatch.setattr(cli, "run_serve", fake_run_serve)
    assert cli.main(["serve", "--queue-limit", "3"]) == 7
    [args] = seen
    assert args.command == "serve" and args.queue_limit == 3


def test_serve_help_lists_every_flag() -> None:
    result = run_python("-m", "lofi_daemon", "serve", "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: lofi-daemon serve")
    for flag in FLAGS:
        assert flag in result.stdout, flag
    listed = run_python("-m", "lofi_daemon", "--help")
    assert "serve" in listed.stdout and "JSON-RPC" in listed.stdout


def test_serve_and_its_service_load_no_heavy_module() -> None:
    """ONNX Runtime (and numpy) are first imported when the engine is built, not before."""
    code = (
        "import sys, json\n"
        "import lofi_daemon.cli.serve, lofi_daemon.service.server\n"
        "lofi_daemon.cli.serve.build_parser().parse_args([])\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    result = run_python("-c", code)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_the_real_command_serves_over_stdio(tmp_path: Path) -> None:
    """``python -m lofi_daemon --log-level debug serve`` with the real engine and no models:
    only protocol lines on stdout, the old and the new name both answered, DEBUG logging."""
    requests = [
        {"jsonrpc": "2.0", "id": 1, "method": "ping"},
        {"jsonrpc": "2.0", "id": 2, "method": "backends.list"},
        {"jsonrpc": "2.0", "id": 3, "method": "get_backends"},
        {"jsonrpc": "2.0", "id": 4, "method": "shutdown"},
    ]
    log_file = tmp_path / "daemon.log"
    result = run_python(
        "-m", "lofi_daemon", "--log-level", "debug", "serve",
        "--models", str(tmp_path / "models"),
        "--cache-dir", str(tmp_path / "cache"),
        "--log-file", str(log_file),
        stdin="".join(json.dumps(r) + "\n" for r in requests),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    replies = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["id"] for r in replies] == [1, 2, 3, 4]
    assert replies[0]["result"]["status"] == "ok"
    assert replies[1]["result"][0]["status"] == "not_installed"
    assert replies[2]["result"] == replies[1]["result"]
    log = log_file.read_text(encoding="utf-8")
    assert " DEBUG " in log and "get_backends is deprecated; use backends.list" in log


def test_serve_backend_is_the_default_of_generate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``serve --backend ace-step-1.5`` with the real engines and no models: ``backends.list``
    marks it the default, and a generate without ``backend`` asks for its models."""
    monkeypatch.delenv("LOFI_MODELS_DIR_ACE_STEP_1_5", raising=False)
    requests = [
        {"jsonrpc": "2.0", "id": 1, "method": "backends.list"},
        {"jsonrpc": "2.0", "id": 2, "method": "generate", "params": {"prompt": "rain", "seed": 1}},
        {"jsonrpc": "2.0", "id": 3, "method": "shutdown"},
    ]
    result = run_python(
        "-m", "lofi_daemon", "serve", "--backend", "ace-step-1.5",
        "--models", str(tmp_path / "models" / "ace-step"),
        "--cache-dir", str(tmp_path / "cache"),
        "--log-file", str(tmp_path / "daemon.log"),
        stdin="".join(json.dumps(r) + "\n" for r in requests),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    listed, generated, _ = [json.loads(line) for line in result.stdout.splitlines()]
    v1, turbo = listed["result"]
    assert (v1["name"], v1["default"]) == ("ace-step", False)
    assert (turbo["name"], turbo["default"], turbo["status"]) == (
        "ace-step-1.5",
        True,
        "not_installed",
    )
    assert turbo["models_dir"] == str(tmp_path / "models" / "ace-step-1.5")
    assert generated["error"]["code"] == -32000  # MODEL_NOT_FOUND
    assert generated["error"]["message"].startswith("ace-step-1.5: ")
