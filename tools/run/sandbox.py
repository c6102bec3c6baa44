"""The local sandbox: every process that runs model code or a rendered script on this machine runs in bubblewrap.

Inside, the process sees the Python runtime and its packages read-only, the inputs it was given read-only, one
writable folder, a private empty /tmp and HOME, and nothing else of this machine's files; it has no network
(its own empty network namespace, loopback only), no capabilities, its own PID namespace (so nothing it starts
survives it) and dies with the process that started it. Its environment is built from an allow-list. The
memory limit is set inside (``prlimit``), so every process of the run inherits it.

Where bubblewrap cannot run (not installed, namespaces disabled, not Linux) the process runs unisolated with
the same environment and limits, and ``local_isolation()`` says so with the reason. Remote model code
(``trust_remote_code``) and an operator's ``AEGIS_REQUIRE_ISOLATION`` refuse an unisolated start here, at the
last step before the process starts, so no caller can talk past it.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from tools.core.errors import GuardRefusal
from tools.core.isolation import Isolation, IsolationFacts
from tools.core.settings import settings

SANDBOX_HOME = "/tmp/home"
BWRAP_DETAIL = "read-only runtime and inputs, one writable folder, private /tmp and HOME, no network"
PROBE_TIMEOUT_S = 10.0
# Passed through when set: locale, and the settings that make the numeric libraries run right on this CPU or GPU.
PASSED_ENV = (
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "OPENBLAS_CORETYPE",
    "OPENBLAS_L2_SIZE",
    "CUDA_VISIBLE_DEVICES",
    "PYTORCH_CUDA_ALLOC_CONF",
)
# The system's own read-only runtime: the loader, libc, the shell tools torch and prlimit call.
SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/etc/ld.so.cache", "/etc/alternatives")
UNISOLATED_HOME = ".home"  # HOME without a sandbox: in the first writable folder
PACKAGE_DIR = Path(__file__).resolve().parents[1]  # tools/: the workers run as `python -m tools....`

_probed: dict[str, IsolationFacts] = {}


class IsolationRefused(GuardRefusal):
    """A run that must be isolated cannot be, here; nothing was started."""


@dataclass(frozen=True)
class Mounts:
    """What one sandboxed process may see: its inputs read-only, and the one folder it writes."""

    read_only: tuple[Path, ...] = ()
    writable: tuple[Path, ...] = ()
    remote_code: bool = False  # the process runs a model's own code (trust_remote_code): isolated or not at all


def _bwrap() -> str | None:
    configured = settings().bwrap
    if configured is not None:
        return str(configured) if configured.is_file() and os.access(configured, os.X_OK) else None
    return shutil.which("bwrap")


def local_isolation() -> IsolationFacts:
    """Whether bubblewrap can isolate a process here: tried once per binary, with the reason when it cannot."""
    if not sys.platform.startswith("linux"):
        return IsolationFacts(kind=Isolation.NONE, detail=f"bubblewrap needs Linux namespaces; this is {sys.platform}")
    bwrap = _bwrap()
    if bwrap is None:
        where = settings().bwrap or "PATH"
        detail = f"bubblewrap was not found ({where}); install it: apt-get install bubblewrap"
        return IsolationFacts(kind=Isolation.NONE, detail=detail)
    if bwrap not in _probed:
        _probed[bwrap] = _probe(bwrap)
    return _probed[bwrap]


def _probe(bwrap: str) -> IsolationFacts:
    try:
        done = subprocess.run(
            [bwrap, *_namespace_args(), "--ro-bind", "/", "/", "true"],
            capture_output=True,
            timeout=PROBE_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return IsolationFacts(kind=Isolation.NONE, detail=f"bubblewrap could not start: {exc}")
    if done.returncode != 0:
        said = done.stderr.decode("utf-8", "replace").strip().splitlines()
        reason = said[-1] if said else f"exit code {done.returncode}"
        return IsolationFacts(kind=Isolation.NONE, detail=f"bubblewrap cannot create namespaces here: {reason}")
    return IsolationFacts(kind=Isolation.BUBBLEWRAP, detail=BWRAP_DETAIL)


def check_isolation(*, remote_code: bool) -> IsolationFacts:
    """The isolation a local start gets, or IsolationRefused where it must be isolated and cannot be."""
    facts = local_isolation()
    if facts.isolated:
        return facts
    if remote_code:
        raise IsolationRefused(
            f"the model ships its own code (trust_remote_code) and runs only isolated, but {facts.describe()}; "
            "install bubblewrap, or use a model without remote code"
        )
    if settings().require_isolation:
        raise IsolationRefused(
            f"AEGIS_REQUIRE_ISOLATION is set and {facts.describe()}; install bubblewrap or run it on Modal"
        )
    return facts


def sandbox_env(home: str, threads: int) -> dict[str, str]:
    """The environment of a sandboxed process: built from an allow-list, never the parent's less some names."""
    env = {name: os.environ[name] for name in PASSED_ENV if name in os.environ}
    bin_dirs = [str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin"]
    n = str(threads)
    env |= {
        "PATH": os.pathsep.join(dict.fromkeys(bin_dirs)),
        "HOME": home,
        "USER": "aegis",  # getpass.getuser() (torch's caches) without a passwd file
        "LOGNAME": "aegis",
        "TMPDIR": "/tmp",
        "HF_HOME": f"{home}/.cache/huggingface",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
        "PYTHONNOUSERSITE": "1",
        "OMP_NUM_THREADS": n,
        "MKL_NUM_THREADS": n,
        "TOKENIZERS_PARALLELISM": "false",
        # Progress bars (tqdm, the Hub's, datasets') redrawn into a log file are noise: the run reports its own steps.
        "TQDM_DISABLE": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
        # pyarrow's default pool reserves 1 GB of writable address space at import, which RLIMIT_DATA counts.
        "ARROW_DEFAULT_MEMORY_POOL": "system",
    }
    return env


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _namespace_args() -> list[str]:
    return ["--unshare-all", "--die-with-parent", "--cap-drop", "ALL"]


def runtime_paths() -> list[Path]:
    """The Python runtime, its packages and Aegis's own package: what every sandboxed process reads."""
    return [Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve(), PACKAGE_DIR]


def _bind_source(path: Path) -> Path:
    """A model folder in the Hub's cache is symlinks into its blobs: bind the whole cache entry."""
    resolved = path.resolve()
    if resolved.parent.name == "snapshots":
        return resolved.parent.parent
    return resolved


def _binds(mounts: Mounts) -> list[str]:
    """Bind arguments, outer folders first so a nested read-only input stays read-only inside a writable one."""
    chosen: dict[Path, str] = {}
    for path in [*runtime_paths(), *mounts.read_only]:
        chosen.setdefault(_bind_source(path), "--ro-bind")
    for path in mounts.writable:
        chosen[path.resolve()] = "--bind"
    args: list[str] = []
    for path in sorted(chosen, key=lambda p: (len(p.parts), str(p))):
        if path.exists():
            args += [chosen[path], str(path), str(path)]
    return args


def bwrap_command(cmd: list[str], mounts: Mounts, cwd: Path, bwrap: str) -> list[str]:
    args = [bwrap, *_namespace_args()]
    for path in SYSTEM_PATHS:
        args += ["--ro-bind-try", path, path]
    args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--dir", SANDBOX_HOME]
    for device in sorted(glob.glob("/dev/nvidia*")):
        args += ["--dev-bind", device, device]
    args += _binds(mounts)
    return [*args, "--chdir", str(cwd.resolve()), "--", *cmd]


@dataclass(frozen=True)
class Contained:
    """A started process and the isolation it got."""

    proc: subprocess.Popen[bytes]
    isolation: IsolationFacts


def start_contained(
    cmd: list[str],
    mounts: Mounts,
    *,
    cwd: Path,
    stdout: IO[bytes] | int,
    stdin: IO[bytes] | int = subprocess.DEVNULL,
    memory_limit_mb: int | None = None,
    threads: int | None = None,
    extra_env: Mapping[str, str] | None = None,
    outer: IsolationFacts | None = None,
) -> Contained:
    """Start ``cmd`` in the sandbox, in a session of its own (its group can be killed as one).

    Refused (IsolationRefused, nothing started) when it must be isolated and cannot be. ``extra_env`` adds
    fixed, non-secret values the caller owns (never the parent's environment). ``outer``: this whole process
    already runs in a sandbox (a Modal container), which then is the isolation. ``stdin``: a pipe for a worker
    that takes requests as it runs (tools.use.model_worker); none by default.
    """
    facts = outer if outer is not None and outer.isolated else check_isolation(remote_code=mounts.remote_code)
    inner = list(cmd)
    if memory_limit_mb is not None:
        limit = int(memory_limit_mb) * 2**20
        inner = [_prlimit(), f"--data={limit}:{limit}", "--", *inner]
    if facts.kind is Isolation.BUBBLEWRAP:
        home = SANDBOX_HOME
        full = bwrap_command(inner, mounts, cwd, _bwrap() or "bwrap")
    else:
        home = str(_unisolated_home(mounts, cwd))
        full = inner
    env = sandbox_env(home, threads or available_cores()) | dict(extra_env or {})
    proc = subprocess.Popen(
        full,
        cwd=cwd,
        stdin=stdin,
        stdout=stdout,
        stderr=subprocess.STDOUT if stdout != subprocess.DEVNULL else subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    return Contained(proc=proc, isolation=facts)


def _prlimit() -> str:
    found = shutil.which("prlimit", path="/usr/bin:/bin")
    if found is None:
        raise GuardRefusal("prlimit (util-linux) is missing, so the memory limit cannot be set; install util-linux")
    return found


def _unisolated_home(mounts: Mounts, cwd: Path) -> Path:
    """Without a sandbox, HOME is still not the person's: an empty folder inside the writable one."""
    base = mounts.writable[0] if mounts.writable else cwd
    home = Path(base) / UNISOLATED_HOME
    home.mkdir(parents=True, exist_ok=True)
    return home


def paths_of(values: Iterable[str | os.PathLike[str] | None]) -> tuple[Path, ...]:
    """The existing local paths among some values (a Hub id or None is no path to bind)."""
    return tuple(Path(v) for v in values if v and Path(v).exists())
