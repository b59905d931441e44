"""Command line: `python -m trapdoor_trainer run|poison|sanitize|check-model|describe|validate-params|device`.

Exit codes: 0 done; 2 invalid spec or data (JSON error on stderr); 3 cancelled by SIGTERM after a
checkpoint was written; anything else is a crash (the worker may retry it).

`describe` prints the catalog (`catalog.py`; `schema/catalog.json` is a copy, `make catalog`).
`validate-params` reads JSON lines {"kind": "method"|"attack", "name", "value"} on stdin and
writes one line per input, {"ok": true} or {"ok": false, "field", "message"}: the schema check
alone, for comparing another validator against this one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

# Before torch loads OpenBLAS: torch already parallelises the GEMM loops it hands to BLAS (e.g.
# transposed convolutions) with OpenMP, and BLAS threads inside those oversubscribe the cores.
# bench/RESULTS.md has the measurement (stage-1 img/s roughly doubles).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from .errors import EXIT_CANCELLED, EXIT_INVALID, EXIT_OK, Cancelled, SpecError


def _cmd_run(args) -> int:
    from . import distributed
    from .context import CancelFlag
    from .events import Emitter
    from .runner import run_job
    from .spec import load_spec

    cancel = CancelFlag()
    cancel.install()
    spec = load_spec(args.spec)
    # Under torchrun only rank 0 speaks (distributed.py); the others' events go nowhere.
    emitter = Emitter() if distributed.rank() == 0 else Emitter(open(os.devnull, "w"))
    run_job(spec, Path(args.workdir), emitter, cancel=cancel)
    return EXIT_OK


def _cmd_poison(args) -> int:
    from .poison_command import run_poison

    run_poison(args.spec, Path(args.out), Path(args.asr_out) if args.asr_out else None)
    return EXIT_OK


def _cmd_sanitize(args) -> int:
    from .sanitize_command import run_sanitize

    run_sanitize(args.spec, Path(args.out))
    return EXIT_OK


def _cmd_check_model(args) -> int:
    from .model_check import run_check_model

    print(json.dumps(run_check_model(args.spec)))
    return EXIT_OK


def _cmd_describe(args) -> int:
    from .catalog import catalog_json

    sys.stdout.write(catalog_json())
    return EXIT_OK


def _cmd_validate_params(args) -> int:
    from .catalog import check_params_lines

    check_params_lines(sys.stdin, sys.stdout)
    return EXIT_OK


def _cmd_device(args) -> int:
    import torch

    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        print(json.dumps({"type": "cuda", "name": props.name, "memoryBytes": int(props.total_memory)}))
    else:
        import platform

        print(json.dumps({"type": "cpu", "name": platform.processor() or platform.machine(), "threads": len(os.sched_getaffinity(0))}))
    return EXIT_OK


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="trapdoor_trainer", description="trapdoor's PyTorch trainer")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run one job described by spec.json")
    run.add_argument("--spec", required=True)
    run.add_argument("--workdir", required=True)
    run.set_defaults(handler=_cmd_run)
    poison = sub.add_parser("poison", help="build a poisoned canonical dataset from a clean one")
    poison.add_argument("--spec", required=True)
    poison.add_argument("--out", required=True)
    poison.add_argument("--asr-out", help="also write the triggered ASR test set here (needs `test` in the spec)")
    poison.set_defaults(handler=_cmd_poison)
    sanitize = sub.add_parser("sanitize", help="write a training set without the samples a health report's scores flag")
    sanitize.add_argument("--spec", required=True)
    sanitize.add_argument("--out", required=True)
    sanitize.set_defaults(handler=_cmd_sanitize)
    check_model = sub.add_parser("check-model", help="check an uploaded safetensors model against a catalog architecture")
    check_model.add_argument("--spec", required=True)
    check_model.set_defaults(handler=_cmd_check_model)
    describe = sub.add_parser("describe", help="print the catalog: methods, attacks (with JSON Schemas of their parameters) and architectures")
    describe.set_defaults(handler=_cmd_describe)
    check = sub.add_parser("validate-params", help="check JSON lines {kind, name, value} from stdin against the catalog's schemas")
    check.set_defaults(handler=_cmd_validate_params)
    device = sub.add_parser("device", help="print the device jobs would run on as JSON")
    device.set_defaults(handler=_cmd_device)
    args = parser.parse_args(argv)
    code, error = EXIT_OK, None
    try:
        code = args.handler(args)
    except SpecError as e:
        code, error = EXIT_INVALID, e.to_json()
    except Cancelled:
        code, error = EXIT_CANCELLED, {"cancelled": True, "message": "stopped by SIGTERM after writing a checkpoint"}
    if error is not None:
        sys.stderr.write(json.dumps(error) + "\n")
    # `run` loaded the process-group module first thing; the other commands never import torch
    # for this, and never run under torchrun.
    group = sys.modules.get(f"{__package__}.distributed")
    if group is not None:
        if group.world_size() > 1 and group.rank() == 0:
            # torchrun exits with its own code, so rank 0 states the trainer's as an event
            from .events import Emitter

            Emitter().emit("exit", code=code, **({"error": error} if error is not None else {}))
        group.shutdown()  # after the code is stated: leaving the group must not lose it
    return code


if __name__ == "__main__":
    sys.exit(main())
