"""`blip-convert` (also `python -m blip_conversion`): convert and verify BLIP checkpoints.

Exit codes: 0 success, 1 `verify` found a difference, 2 bad input (one line on stderr, nothing written).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from blip_conversion import convert
from blip_core.io.native_logs import quiet_native_logs
from blip_onnx.layout import DEFAULT_OPSET

EXIT_OK, EXIT_MISMATCH, EXIT_ERROR = 0, 1, 2
MESSAGE_LIMIT = 600


def fail(message: str) -> int:
    """Print one line on stderr (whitespace collapsed, long lists cut) and return the error code."""
    line = " ".join(str(message).split())
    if len(line) > MESSAGE_LIMIT:
        line = line[: MESSAGE_LIMIT - 3] + "..."
    print(f"blip-convert: error: {line}", file=sys.stderr)
    return EXIT_ERROR


class _Parser(argparse.ArgumentParser):
    """Usage mistakes end in one line too (argparse prints the usage block first)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.exit(fail(f"{message} (see blip-convert {self.prog.split()[-1]} --help)"))


def _hub(args: argparse.Namespace) -> dict:
    options = {
        "revision": args.revision,
        "cache_dir": args.cache_dir,
        "local_files_only": args.local_files_only or None,
    }
    return {key: value for key, value in options.items() if value}


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="blip-convert", description="Convert and verify BLIP checkpoints.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def source_command(name: str, help_text: str) -> argparse.ArgumentParser:
        command = commands.add_parser(name, help=help_text)
        command.add_argument("source", help="a folder or a Hub repo id")
        command.add_argument("destination", help="the folder to write (must not exist unless --force)")
        command.add_argument("--force", action="store_true", help="replace an existing destination")
        command.add_argument("--class", dest="class_name", help="model class, when config.json names none")
        _hub_options(command)
        _verbose_option(command)
        return command

    source_command(
        "to-safetensors",
        "any checkpoint (.bin, tf_model.h5, Keras 3 model.weights.h5, TF-named safetensors; sharded too) "
        "-> canonical model.safetensors",
    )
    source_command("to-bin", "any checkpoint -> pytorch_model.bin (needs torch)")
    source_command("to-h5", "any checkpoint -> tf_model.h5 named like transformers' TF port")
    keras = source_command("to-keras", "any checkpoint -> Keras 3 model.weights.h5 (needs tensorflow)")
    keras.add_argument("--saved-model", action="store_true", help="also export a serving SavedModel")

    original = commands.add_parser("from-original", help="an original salesforce/BLIP .pth -> the Hub layout")
    original.add_argument("checkpoint", help="the .pth file ({'model': state_dict})")
    original.add_argument("destination")
    original.add_argument("--task", required=True, choices=["caption", "vqa", "itm"])
    original.add_argument("--vit", default="base", choices=["base", "large"])
    original.add_argument("--image-size", type=int, default=384)
    original.add_argument("--config", help="a BLIP config.json with the checkpoint's sizes (custom models)")
    original.add_argument("--force", action="store_true")
    _verbose_option(original)

    onnx = commands.add_parser(
        "to-onnx", help="a captioning, VQA or retrieval checkpoint -> ONNX graphs for ONNX Runtime (checked)"
    )
    onnx.add_argument("source", help="a folder or a Hub repo id")
    onnx.add_argument("destination", help="the folder to write (must not exist unless --force)")
    onnx.add_argument("--task", choices=["caption", "vqa", "itm"], help="default: the checkpoint's own")
    onnx.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    onnx.add_argument("--int8", action="store_true", help="quantize with ONNX Runtime's dynamic int8 quantization")
    onnx.add_argument("--force", action="store_true", help="replace an existing destination")
    _hub_options(onnx)
    _verbose_option(onnx)

    check = commands.add_parser("verify", help="run a checkpoint through blip_torch and blip_tf and compare")
    check.add_argument("source", help="a folder or a Hub repo id")
    check.add_argument("--image", help="an image path or URL (default: a generated test card)")
    check.add_argument("--text", help="the prompt (captioning) or question (VQA)")
    _hub_options(check)
    _verbose_option(check)
    return parser


def _hub_options(command: argparse.ArgumentParser) -> None:
    """Where a Hub source comes from: --revision, --cache-dir, --local-files-only (read by `_hub`)."""
    command.add_argument("--revision")
    command.add_argument("--cache-dir")
    command.add_argument("--local-files-only", action="store_true")


def _verbose_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--verbose", action="store_true", help="let TensorFlow's and XLA's own log lines through to stderr"
    )


def run(args: argparse.Namespace) -> int:
    if args.command == "verify":
        from blip_conversion.verify import verify

        report = verify(args.source, args.image, args.text, _hub(args))
        print(report.table())
        return EXIT_OK if report.passed else EXIT_MISMATCH
    if args.command == "from-original":
        folder, report = convert.from_original(
            args.checkpoint, args.task, args.destination, args.vit, args.image_size, args.force, args.config
        )
        details = ", ".join(f"{key} {value}" for key, value in report.items() if value)
        print(f"wrote {folder} ({details})")
        return EXIT_OK
    if args.command == "to-onnx":
        from blip_conversion.onnx_export import export_onnx

        folder, report = export_onnx(
            args.source, args.destination, args.task, args.opset, args.int8, args.force, _hub(args)
        )
        print(report.table())
        print(f"wrote {folder}")
        return EXIT_OK
    if args.command == "to-keras":
        folder = convert.to_keras(args.source, args.destination, args.force, args.saved_model, _hub(args))
    else:
        function = {"to-safetensors": convert.to_safetensors, "to-bin": convert.to_bin, "to-h5": convert.to_h5}[
            args.command
        ]
        folder = function(args.source, args.destination, args.force, args.class_name, _hub(args))
    print(f"wrote {folder}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    with quiet_native_logs(not args.verbose):
        try:
            return run(args)
        except (ValueError, OSError, RuntimeError, TypeError, ImportError) as err:
            return fail(str(err))


if __name__ == "__main__":
    sys.exit(main())
