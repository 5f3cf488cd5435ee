"""``fusionkit serve``: a bundle behind an HTTP API; and the ONNX part of ``fusionkit export --onnx``."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

EXIT_INVALID = 2
CONFIG_ENV = "FUSIONKIT_SERVE_CONFIG"


def _device_name(ctx, param, value: str | None) -> str | None:
    from fusionkit.sdk.torch_models import check_device_name

    try:
        return None if value is None else check_device_name(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


device_option = click.option(
    "--device", metavar="DEVICE", callback=_device_name,
    help="Where the bundle's torch parts run: cpu, cuda, cuda:N, mps or auto (default: where each was trained "
         "when this machine has that device, else the CPU).")


def _refuse(line: str) -> None:
    click.echo(f"error: {line}", err=True)
    sys.exit(EXIT_INVALID)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def export_onnx_lines(bundle_dir: Path) -> list[str]:
    """Write the bundle's ONNX graphs; the lines saying what was written and what was not (exit 2 when nothing
    could be, 1 when the export failed)."""
    try:
        from fusionkit.onnx import export_onnx
    except ImportError as exc:
        _refuse(f"--onnx needs the onnx extra (pip install 'fusionkit[onnx]'): {exc}")
    from fusionkit.bundle import ExportError

    try:
        index = export_onnx(bundle_dir)
    except ExportError as exc:
        _refuse(_one_line(exc))
    except (ValueError, OSError, RuntimeError) as exc:
        click.echo(f"error: {bundle_dir}: ONNX export failed: {_one_line(exc)}", err=True)
        sys.exit(1)
    parts = [f"encoder {n}" for n in index["encoders"]] + (["head"] if index["head"] else [])
    lines = [f"ONNX graphs written to {bundle_dir / 'onnx'}: {', '.join(parts)}"]
    lines += [f"  not exported: {what}: {why}" for what, why in index["skipped"].items()]
    return lines


def load_for_runtime(bundle: Path, runtime: str, trust_remote_code: bool, device: str | None = None):
    """The bundle loaded for ``--runtime torch`` (:meth:`Bundle.load`, its parts on ``device``) or ``onnx`` (its
    exported graphs, on the CPU)."""
    if runtime == "onnx":
        if device not in (None, "cpu"):
            raise ValueError(f"--device {device}: the onnx runtime runs on the CPU; use --runtime torch")
        from fusionkit.onnx import load_onnx

        return load_onnx(bundle, trust_remote_code=trust_remote_code)
    from fusionkit.bundle import Bundle

    return Bundle.load(bundle, trust_remote_code=trust_remote_code, device=device)


def _audio_files(paths) -> list[str]:
    """Files as given, folders replaced by the audio files under them (sorted), as ``predict --enrol`` expands
    them: what a folder holds besides audio (hidden files, other files) is listed on stderr, not read."""
    from fusionkit.cli.inputs import expand_audio_paths

    files, broken, passed = expand_audio_paths(paths)
    for path, reason in passed:
        click.echo(f"warning: enrolment: {path} passed over: {reason}", err=True)
    return [str(p) for p in [*files, *(p for p, _ in broken)]]  # unreadable ones: the enrolment says why


def load_app(config: dict):
    """The app for a serve configuration (bundle, runtime, limits, batching); errors are one line, exit 2."""
    from fusionkit.recipe import RecipeError
    from fusionkit.serve import Limits, create_app
    from fusionkit.serve.app import health_info

    bundle = Path(config["bundle"])
    try:
        model = load_for_runtime(bundle, config["runtime"], config["trust_remote_code"], config.get("device"))
    except RecipeError as exc:
        _refuse(f"{bundle}: cannot load bundle: {exc.lines[0]}")
    except ImportError as exc:
        _refuse(f"{bundle}: --runtime {config['runtime']} needs a package that is not installed: {exc}")
    except Exception as exc:  # noqa: BLE001
        _refuse(f"{bundle}: cannot load bundle: {_one_line(exc)}")
    enrol = None
    if model.normalize != "none":
        if not config["enrol"]:
            _refuse(model.enrolment_hint(serve=True))
        try:
            enrol = model.enrol(config["enrol"])
        except ValueError as exc:
            _refuse(f"--enrol: {_one_line(exc)}")
    elif config["enrol"]:
        _refuse(f"{bundle}: this bundle was trained with normalize: none; --enrol does not apply to it")
    limits = Limits(max_bytes=int(config["max_mb"] * 2**20), max_seconds=config["max_seconds"])
    return create_app(model, health_info(model, config["runtime"]), limits, config["max_batch"],
                      config["batch_wait_ms"], enrol)


def app_from_env():
    """uvicorn's factory for ``--workers N``: each worker process loads the bundle from the configuration."""
    return load_app(json.loads(os.environ[CONFIG_ENV]))


@click.command("serve")
@click.argument("bundle", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Worker processes, each with its own copy of the bundle.")
@click.option("--runtime", type=click.Choice(["torch", "onnx"]), default="torch", show_default=True,
              help="onnx: run the graphs written by export --onnx with onnxruntime.")
@click.option("--max-mb", type=click.FloatRange(min=0, min_open=True), default=20.0, show_default=True,
              help="Largest upload in MiB (413 beyond).")
@click.option("--max-seconds", type=click.FloatRange(min=0, min_open=True), default=120.0, show_default=True,
              help="Longest audio in seconds (413 beyond).")
@click.option("--max-batch", type=click.IntRange(1, 256), default=8, show_default=True,
              help="Most whole-file requests labelled in one batch.")
@click.option("--batch-wait-ms", type=click.FloatRange(0, 1000), default=10.0, show_default=True,
              help="How long a request waits for others to batch with.")
@click.option("--enrol", multiple=True, help="Enrolment audio (files or folders) for a normalised bundle.")
@click.option("--trust-remote-code", is_flag=True,
              help="Allow a bundle whose recipe asks for trust_remote_code to run code shipped with its models.")
@device_option
def serve_command(bundle: Path, host, port, workers, runtime, max_mb, max_seconds, max_batch, batch_wait_ms, enrol,
                  trust_remote_code, device) -> None:
    """Serve BUNDLE over HTTP: POST /predict, GET /health, OpenAPI at /docs."""
    try:
        import uvicorn
    except ImportError:
        _refuse("serve needs the serve extra: pip install 'fusionkit[serve]'")
    files = _audio_files(enrol)
    config = {"bundle": str(bundle.resolve()), "runtime": runtime, "trust_remote_code": trust_remote_code,
              "device": device, "enrol": files, "max_mb": max_mb, "max_seconds": max_seconds, "max_batch": max_batch,
              "batch_wait_ms": batch_wait_ms}
    if workers == 1:
        app = load_app(config)
        uvicorn.run(app, host=host, port=port, log_level="info")
        return
    load_app(config)  # refuse a bad bundle here, once, before starting the workers
    os.environ[CONFIG_ENV] = json.dumps(config)
    uvicorn.run("fusionkit.cli.serve:app_from_env", factory=True, host=host, port=port, workers=workers,
                log_level="info")
