"""What the entry points share: a one-line error for bad input, and a check of config
group choices before Hydra composes (Hydra's own message spans many lines).

Hydra's own config errors (an override of a key that does not exist, a missing ``???``
value, a bad override's syntax, an unknown option of one of Hydra's groups) end the same
way: `precheck_overrides` asks Hydra to raise them (``HYDRA_FULL_ERROR=1``, unless the
user set it) and a `sys.excepthook` turns an uncaught one into one ``error:`` line and
exit code 2; raised inside the job, `guard` does the same."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from wsol.errors import WSOLError

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
GROUPS = (
    "data",
    "model",
    "method",
    "pool",
    "localizer",
    "protocol",
    "optim",
    "trainer",
    "logger",
    "paths",
    "experiment",
    "hparams_search",
)


def options(group: str) -> list[str]:
    """The choices of a config group: the yaml files in conf/<group>/ (a name starting
    with ``_`` is a shared base, not a choice)."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml") if not p.stem.startswith("_"))


def parse_overrides(argv: list[str]) -> list:
    """Hydra's own parse of the command line's overrides (``[]`` where Hydra would refuse
    the syntax: Hydra reports that itself). Flags such as ``--help`` are skipped."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    try:
        return parser.parse_overrides([a for a in argv if not a.startswith("-")])
    except HydraException:
        return []


def _choices(override) -> list:
    """The values an override sets (one, a list, or a choice sweep's); none for a
    deletion, a glob or a range, which Hydra expands itself."""
    from hydra.core.override_parser.types import ChoiceSweep, Glob

    if override.is_delete():
        return []
    value = override.value()
    if isinstance(value, Glob):
        return []
    if isinstance(value, ChoiceSweep):
        return [v for item in value.list for v in (item if isinstance(item, list) else [item])]
    if override.is_sweep_override():
        return []
    return value if isinstance(value, list) else [value]


def check_overrides(argv: list[str]) -> None:
    """Raise WSOLError for an unknown choice of a config group in ``argv``."""
    for o in parse_overrides(argv):
        group = o.key_or_group
        if group not in GROUPS or o.package:
            continue
        valid = options(group)
        for v in _choices(o):
            if v is not None and str(v) not in valid:
                raise WSOLError(
                    f"unknown {group} {str(v)!r}; valid: {', '.join(valid)} (set {group}=NAME)"
                )


def fail(message: str, code: int = 2) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def precheck_overrides(argv: list[str] | None = None) -> None:
    """Check the command line's group choices; from the command line itself (``argv``
    None) also make Hydra's config errors end in one ``error:`` line (module docstring)."""
    args = sys.argv[1:] if argv is None else argv
    try:
        check_overrides(args)
        check_output_dir(args)
    except WSOLError as e:
        fail(str(e), e.exit_code)
    if argv is None:
        _report_config_errors()


def check_output_dir(argv: list[str]) -> None:
    """A ``paths.output_dir=DIR`` on the command line must be a folder that can be
    written (made if missing): checked here because Hydra makes its run folder there
    before the job starts, and fails with a traceback where it cannot."""
    from wsol.io import check_writable

    if any(a in ("-h", "--help", "--hydra-help", "-c", "--cfg", "-i", "--info") for a in argv):
        return  # Hydra only prints: nothing is written
    for o in parse_overrides(argv):
        if o.key_or_group != "paths.output_dir" or o.is_sweep_override() or o.is_delete():
            continue
        value = o.value()
        # interpolations and null are left to the job
        if isinstance(value, str) and value and "${" not in value:
            check_writable(value)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def config_error_message(e: BaseException) -> str | None:
    """One line for a Hydra or OmegaConf config error (or a `WSOLError` that Hydra's
    ``instantiate`` wrapped); None for anything else."""
    from hydra.errors import HydraException, InstantiationException
    from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

    cause: BaseException | None = e
    while cause is not None:  # a WSOLError raised inside instantiate() keeps its words
        if isinstance(cause, WSOLError):
            return str(cause)
        cause = cause.__cause__
    if isinstance(e, InstantiationException):
        return f"config: {_one_line(e)}"
    if isinstance(e, OmegaConfBaseException):
        key = getattr(e, "full_key", None)
        if isinstance(e, MissingMandatoryValue) and key:
            return f"config: {key} is not set (it is ???); set {key}=VALUE on the command line"
        first = _one_line(str(e).split("\n")[0])
        return f"config: {first}" + (f" (setting {key})" if key else "")
    if isinstance(e, HydraException):
        parts: list[str] = []
        for raw in str(e).splitlines():
            line = raw.strip().rstrip(".")
            if line.startswith("Config search path"):
                break  # Hydra's search path listing follows: not the user's concern
            if not line:
                continue
            if raw[:1].isspace() and parts:  # an indented item of a list ("Available options")
                parts[-1] += (" " if parts[-1].endswith(":") else ", ") + line
            else:
                parts.append(line)
        if isinstance(e.__cause__, OmegaConfBaseException) and parts:
            parts[0] += f": {_one_line(str(e.__cause__).splitlines()[0])}"
        return f"config: {_one_line('; '.join(parts))}"
    return None


def _report_config_errors() -> None:
    """Make Hydra raise its config errors (rather than print several lines and exit 1)
    and turn one that reaches the top into one ``error:`` line with exit code 2. A user's
    own ``HYDRA_FULL_ERROR=1`` keeps Hydra's full traceback."""
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        return
    os.environ["HYDRA_FULL_ERROR"] = "1"
    previous = sys.excepthook

    def hook(kind, value, tb):
        message = config_error_message(value) if isinstance(value, Exception) else None
        if message is None and isinstance(value, OSError) and _in_frames(tb, "run_job"):
            # Hydra could not make its run folder (hydra.run.dir, from paths.output_dir)
            message = (
                f"cannot make the run folder {value.filename} ({value.strerror}); "
                "set paths.output_dir=DIR to a folder you can write"
            )
        if message is None:
            previous(kind, value, tb)
            return
        print(f"error: {message}", file=sys.stderr, flush=True)
        logging.shutdown()
        sys.stdout.flush()
        os._exit(2)  # an excepthook cannot set the exit code otherwise

    sys.excepthook = hook


def _in_frames(tb, function: str) -> bool:
    while tb is not None:
        if tb.tb_frame.f_code.co_name == function:
            return True
        tb = tb.tb_next
    return False


def guard(fn: Callable, *args, **kwargs):
    """Call ``fn``; a `WSOLError` (or a config error from Hydra or OmegaConf, or a
    `WSOLError` that ``instantiate`` wrapped) becomes one line on stderr and exit code 2."""
    try:
        return fn(*args, **kwargs)
    except WSOLError as e:
        logging.getLogger("wsol").debug("user error", exc_info=True)
        fail(str(e), e.exit_code)
    except Exception as e:
        message = config_error_message(e)
        if message is None:
            raise
        logging.getLogger("wsol").debug("config error", exc_info=True)
        fail(message, 2)
