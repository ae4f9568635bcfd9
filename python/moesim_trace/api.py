"""moesim from Python: replay, compare, sweep and plan, each returning a pandas DataFrame of moesim's own report.

    from moesim_trace import api
    runs = api.compare(config="configs/default.yaml")            # one row per strategy
    row = api.replay("traces/mixtral-synth.jsonl.gz", policy="lru", budget="25%")
    grid = api.sweep("configs/sweep-example.yaml", jobs=2)
    p = api.plan(target="tokens_per_s=5", hardware="rtx4090")    # p.frontier, p.reached, p.config_yaml, p.text

Keyword options become the command's own options (`max_seqs=8` is `--max-seqs 8`; `True` a bare flag; a list or
tuple repeats the option, as `set_=["hardware.gpus=4"]`, the trailing underscore for names Python keeps). The
binary is `$MOESIM_BIN`, else `moesim` on PATH, else this checkout's `.build/release/moesim`; without one, a
`MoesimNotFound` says how to get it. A command that fails raises `MoesimError` with moesim's own message.
"""
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path


class MoesimNotFound(RuntimeError):
    """No moesim binary: set MOESIM_BIN, put moesim on PATH, or build it (make build)."""


class MoesimError(RuntimeError):
    """moesim ran and failed; the message is its stderr."""

    def __init__(self, message, status):
        super().__init__(message)
        self.status = status


def find_binary():
    """The moesim binary to run: $MOESIM_BIN, moesim on PATH, or this checkout's release build."""
    named = os.environ.get("MOESIM_BIN")
    if named:
        if os.path.isfile(named) and os.access(named, os.X_OK):
            return named
        raise MoesimNotFound(f"MOESIM_BIN is {named!r}, which is not an executable file")
    on_path = shutil.which("moesim")
    if on_path:
        return on_path
    checkout = Path(__file__).resolve().parents[2] / ".build" / "release" / "moesim"
    if checkout.is_file() and os.access(checkout, os.X_OK):
        return str(checkout)
    raise MoesimNotFound("no moesim binary: set MOESIM_BIN to its path, put moesim on PATH, "
                         "or build it in the repository with `make build` (swift build -c release --product moesim)")


def _pandas():
    try:
        import pandas
    except ImportError as e:  # an optional extra: pip install 'moesim-trace[api]'
        raise ImportError("moesim_trace.api returns pandas DataFrames: pip install 'moesim-trace[api]' (or pandas)") from e
    return pandas


def _options(options):
    """Keyword options as command-line arguments, in the order given."""
    args = []
    for key, value in options.items():
        flag = "--" + key.rstrip("_").replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            args.append(flag)
        elif isinstance(value, (list, tuple)):
            for item in value:
                args += [flag, str(item)]
        else:
            args += [flag, str(value)]
    return args


def _run(args, cwd=None, ok=(0,)):
    result = subprocess.run([find_binary()] + args, cwd=cwd, capture_output=True, text=True)
    if result.returncode not in ok:
        message = result.stderr.strip() or result.stdout.strip() or f"moesim exited with {result.returncode}"
        raise MoesimError(message, result.returncode)
    return result


def _read(path):
    return _pandas().read_csv(path)


def replay(trace, cwd=None, **options):
    """One run of `moesim replay TRACE` as a one-row DataFrame (docs/metrics.md names its columns)."""
    with tempfile.TemporaryDirectory() as work:
        out = os.path.join(work, "replay.csv")
        _run(["replay", str(trace)] + _options(options) + ["--out", out], cwd=cwd)
        return _read(out)


def compare(cwd=None, **options):
    """`moesim compare`: every strategy of a config, a row each."""
    with tempfile.TemporaryDirectory() as work:
        out = os.path.join(work, "compare.csv")
        _run(["compare"] + _options(options) + ["--out", out], cwd=cwd)
        return _read(out)


def sweep(config, cwd=None, **options):
    """`moesim sweep CONFIG`: a row per cell."""
    with tempfile.TemporaryDirectory() as work:
        out = os.path.join(work, "sweep.csv")
        _run(["sweep", str(config)] + _options(options) + ["--out", out], cwd=cwd)
        return _read(out)


@dataclass
class Plan:
    """`moesim plan`'s answer: every replay of the search (`frontier`, one row each), whether a strategy reached
    the target, what it printed, and the settings it wrote (None when it wrote none)."""
    frontier: object
    reached: bool
    text: str
    config_yaml: str = None
    sglang_json: str = None


def plan(target, cwd=None, **options):
    """`moesim plan --target METRIC=VALUE`: exit status 3 (the target out of reach) is an answer, not an error."""
    with tempfile.TemporaryDirectory() as work:
        result = _run(["plan", "--target", str(target)] + _options(options) + ["--out", work], cwd=cwd, ok=(0, 3))
        def text(name):
            path = os.path.join(work, name)
            return Path(path).read_text() if os.path.exists(path) else None
        return Plan(frontier=_read(os.path.join(work, "frontier.csv")), reached=result.returncode == 0,
                    text=result.stdout + result.stderr, config_yaml=text("plan.yaml"),
                    sglang_json=text("sglang-expert-location.json"))
