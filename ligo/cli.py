"""What every command-line entry point shares: log lines of the `ligo` loggers on stderr,
and bad input (a missing file, a wrong config, ...) reported as one line, not a traceback.
Set LIGO_DEBUG=1 to see the traceback instead."""
from __future__ import annotations

import logging
import os
import sys

from ligo.progress import quiet_library_progress_bars

# mistakes in the input: reported as `error: <sentence>` (exit status 1)
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, PermissionError)


def setup_logging(is_main: bool = True) -> None:
    """INFO lines of the `ligo` loggers (warnings only on ranks other than 0); the root
    logger, and so a host application's logging, is left alone."""
    quiet_library_progress_bars()
    root = logging.getLogger("ligo")
    root.setLevel(logging.INFO if is_main else logging.WARNING)
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)


def run(main, argv: list[str] | None = None):
    try:
        result = main(argv)
    except USER_ERRORS as error:
        if os.environ.get("LIGO_DEBUG"):
            raise
        sys.exit(f"error: {error}")
    from ligo.distributed import launched_world_size

    if launched_world_size() > 1:
        _exit_without_interpreter_teardown()
    return result


def _exit_without_interpreter_teardown() -> None:
    """End a finished torchrun worker here. Device meshes, FSDP and DTensors keep references
    to gloo process groups past destroy_process_group; their worker threads are then torn
    down during interpreter finalization, which now and then aborts the process (SIGABRT,
    "terminate called without an active exception"; once in a test run of ~40 launches),
    and torchrun reports a run that finished as failed. Everything is written and closed by
    now; flush what is buffered and leave."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def run_distributed(body, groups: tuple, argv: list[str] | None, description: str):
    """Parse the argument groups, join the process group (torchrun) and run
    `body(*arguments, info)`, leaving the process group however it ends."""
    from ligo import distributed
    from ligo.config import parse_args

    arguments = parse_args(groups, argv, description=description)
    timeout = next((a.dist_timeout_minutes for a in arguments if hasattr(a, "dist_timeout_minutes")),
                   30.0)
    info = distributed.init_distributed(timeout)
    setup_logging(info.is_main)
    try:
        from ligo.precision import resolve_bfloat16

        for group in arguments:  # before any work: refuse a slow bf16, settle auto
            if hasattr(group, "bf16"):
                group.bf16 = resolve_bfloat16(group.bf16, info.device,
                                              fp16=getattr(group, "fp16", False))
        return body(*arguments, info)
    finally:
        distributed.shutdown(info)
