"""The GPU path checked in one call: install, GPU tests, speed, the default run, DDP, bf16; one report.

    python -m gan.device_check [out=device-check] [data=.device/data] [wheels=.device/wheels]   # on the GPU machine
    python -m gan.device_check dry_run=true [out=...]      # the same steps on this CPU, at tiny sizes
    python -m gan.device_check mode=prepare [to=.device]   # where the package index is reachable: what an offline GPU needs

Whoever has a GPU for a few minutes spends them measuring: each step runs as a subprocess with
its own time limit, its output kept in `out/logs/<step>.log`, and `out/report.md` (with
`out/report.json`) rewritten after every step, so a run stopped early still leaves what it
measured. The steps:
  machine   the card, its driver and memory, torch, CUDA and cuDNN versions, the CPU;
  install   a fresh virtual environment over the interpreter's packages (torch comes from the
            machine), the project installed into it from its own files (`pip install -e`, from
            `wheels` alone when given); every later step runs in it;
  tests     the GPU tests (tests/engine/test_cuda_graphs.py: graph against eager, bf16, 16-mixed);
  bench     `gan.bench` for the seed MLP and DCGAN: hand / eager / default it/s, graph replays;
  precision `gan.bench mode=precision`: float32 against bf16-mixed it/s;
  default   the complete `python train.py trainer=gpu` (start-up, 30,000 iterations, evaluations);
  ddp       `trainer=ddp trainer.devices=1` against plain `trainer=gpu`, same iterations;
  bf16      the default run in `trainer.precision=bf16-mixed`, its FID beside float32's.
A failed step is marked FAILED in the report with the end of its log, the steps after it still
run (but none after a failed install), and the command exits 1.

`mode=prepare` writes, under `to`, the wheels of the project's dependencies that a CUDA PyTorch
image lacks (Python 3.12, manylinux x86-64; the versions installed here) and MNIST gzipped, for a
machine that reaches no index: carry that folder there and pass `data=` and `wheels=`.

This runs before the project's dependencies exist on the GPU machine (installing them is one of
its steps), so it imports only the standard library and reads its own `key=value` arguments.
"""

from __future__ import annotations

import dataclasses
import gzip
import inspect
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclasses.dataclass
class Args:
    mode: str = "check"  # check | prepare
    dry_run: bool = False  # the steps on this machine's CPU at tiny sizes (the test suite runs this)
    out: str = "device-check"  # the report, logs, runs and environment go here
    data: str = ""  # a folder holding MNIST/raw (files or .gz); empty: $GAN_DATA_DIR, else the project's data/
    wheels: str = ""  # install from these wheels alone (no index); empty: the package index
    steps: str = "machine,install,tests,bench,precision,default,ddp,bf16"  # the steps to run (always in this order)
    to: str = ".device"  # mode=prepare: where the wheels and the data go


# What a CUDA PyTorch image brings (the H200 image's packages among them): mode=prepare fetches the rest.
ON_GPU_IMAGES = {
    "torch", "torchvision", "triton", "pytorch-lightning", "lightning-utilities", "torchmetrics", "numpy", "scipy", "pillow",
    "matplotlib", "contourpy", "cycler", "fonttools", "kiwisolver", "pyparsing", "python-dateutil", "six", "tensorboard",
    "tensorboard-data-server", "grpcio", "protobuf", "absl-py", "markdown", "werkzeug", "markupsafe", "jinja2", "pyyaml",
    "sympy", "mpmath", "networkx", "filelock", "fsspec", "typing-extensions", "packaging", "tqdm", "joblib",
    "cloudpickle", "narwhals", "pytest", "pluggy", "iniconfig", "pygments", "requests", "urllib3", "idna", "certifi",
    "charset-normalizer",
}
SKIPPED_PREFIXES = ("nvidia-", "cuda-")  # the CUDA libraries torch's own wheel brings
BUILD_REQUIREMENT = "setuptools>=70.1"  # builds the project (pyproject.toml) and any source package, offline too


@dataclasses.dataclass
class Step:
    name: str
    title: str
    command: list[str]
    timeout: int  # seconds
    run_dir: Path | None = None  # a training run's folder, whose status.json the report reads
    status: str = "not run"
    seconds: float = 0.0
    figures: dict = dataclasses.field(default_factory=dict)
    tail: str = ""


def parse(argv: list[str]) -> Args:
    """`key=value` arguments into Args; one paragraph naming a bad key and what is allowed."""
    kinds = {f.name: f.type for f in dataclasses.fields(Args)}
    values = {}
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or key not in kinds:
            raise SystemExit(f"error: {arg!r}: arguments are key=value with key among {', '.join(kinds)} "
                             f"(python -m gan.device_check --help)")
        if kinds[key] == "bool":
            if value.lower() not in ("true", "false"):
                raise SystemExit(f"error: {key}={value}: true or false")
            values[key] = value.lower() == "true"
        else:
            values[key] = value
    args = Args(**values)
    unknown = set(args.steps.split(",")) - set(Args.steps.split(","))
    if args.mode not in ("check", "prepare") or unknown:
        raise SystemExit(f"error: mode={args.mode} steps={args.steps}: mode is check or prepare; steps among {Args.steps}")
    return args


def sized(dry_run: bool) -> dict[str, list[str]]:
    """Each step's arguments on a GPU, or on this CPU at tiny sizes."""
    gpu = {"device": ["device=cuda"], "bench": ["models=seed,dcgan", "rounds=3"],
           "precision": ["models=seed,dcgan", "rounds=2"], "trainer": ["trainer=gpu"],
           "ddp": ["trainer=ddp", "trainer.devices=1"], "short": ["trainer.max_steps=3000", "eval_every=0"], "default": []}
    cpu = {"device": ["device=cpu"], "bench": ["models=seed,dcgan", "rounds=1", "block=2"],
           "precision": ["models=seed", "rounds=1", "block=4"], "trainer": ["trainer=cpu"],
           "ddp": ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=1"],
           "short": ["trainer.max_steps=20", "eval_every=0"],
           "default": ["trainer.max_steps=40", "eval_every=20", "sample_every=20", "callbacks.metrics.n=500"]}
    return cpu if dry_run else gpu


PY = "python"  # in a planned command: the interpreter the steps run in (after the install, the fresh environment's)


def plan(args: Args, out: Path) -> list[Step]:
    s, runs = sized(args.dry_run), out / "runs"
    train = [PY, str(ROOT / "train.py"), "callbacks.progress_bar.refresh_rate=0"]
    bench = [PY, "-m", "gan.bench", *s["device"]]
    wheels = ["--no-index", "--find-links", args.wheels] if args.wheels else []
    steps = [
        Step("machine", "Machine", [PY, "-c", MACHINE], 120),
        Step("install", "Install from the project's own files", [PY, "-m", "venv", "--without-pip", "env", "&&", "pip",
                                                                  "install", *wheels, "-e", "."], 600),
        Step("tests", "GPU tests", [PY, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-m", "slow or not slow",
                                    "tests/engine/test_cuda_graphs.py"], 300),
        Step("bench", "Speed: hand / eager / default (gan.bench)", [*bench, *s["bench"]], 300),
        Step("precision", "Speed: float32 against bf16-mixed (gan.bench mode=precision)",
             [*bench, "mode=precision", *s["precision"]], 240),
        Step("default", "The default run, complete", [*train, *s["trainer"], *s["default"], f"hydra.run.dir={runs / 'default'}"],
             300, runs / "default"),
        Step("ddp", "trainer=ddp on one device", [*train, *s["ddp"], *s["short"], f"hydra.run.dir={runs / 'ddp'}"], 200,
             runs / "ddp"),
        Step("plain", "The same iterations without ddp", [*train, *s["trainer"], *s["short"], f"hydra.run.dir={runs / 'plain'}"],
             200, runs / "plain"),
        Step("bf16", "The default run in bf16-mixed",
             [*train, *s["trainer"], *s["default"], "trainer.precision=bf16-mixed", f"hydra.run.dir={runs / 'bf16'}"], 300,
             runs / "bf16"),
    ]
    chosen = set(args.steps.split(","))
    return [step for step in steps if step.name in chosen or (step.name == "plain" and "ddp" in chosen)]


# The machine step's program: the versions and the card, as one line of JSON.
MACHINE = """import json, os, platform, shutil, subprocess, torch
cuda = torch.cuda.is_available()
smi = shutil.which("nvidia-smi")
driver = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True,
                        text=True).stdout.strip() if smi else None
print(json.dumps({"card": torch.cuda.get_device_name() if cuda else "no CUDA device", "driver": driver,
                  "memory_gib": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1) if cuda else None,
                  "torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
                  "python": platform.python_version(), "cpu": platform.processor() or platform.machine(),
                  "cores": os.cpu_count()}))"""


def site_dirs() -> list[str]:
    """This interpreter's package folders (a virtual environment's own, where it runs in one)."""
    return list(dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib")))


def install(args: Args, out: Path, log) -> str:
    """A fresh virtual environment that sees this interpreter's packages (torch as the machine has
    it), with the project installed from its own files. Returns its python."""
    env = out / "env"
    shutil.rmtree(env, ignore_errors=True)
    # Without pip of its own: the machine's pip and setuptools (through the .pth below) install into it.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True, stdout=log, stderr=subprocess.STDOUT)
    python = str(env / "bin" / "python")
    target = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], check=True,
                            capture_output=True, text=True).stdout.strip()
    Path(target, "machine-packages.pth").write_text("".join(f"{d}\n" for d in site_dirs()))
    source = ["--no-index", "--find-links", str(Path(args.wheels).resolve())] if args.wheels else []
    subprocess.run([python, "-m", "pip", "install", "--disable-pip-version-check", *source, "-e", str(ROOT)], check=True,
                   stdout=log, stderr=subprocess.STDOUT)  # (its build needs setuptools: from the index, or among the wheels)
    subprocess.run([python, "-c", "import gan.module, hydra, optuna, pytorch_lightning; print('imports: ok')"], check=True,
                   stdout=log, stderr=subprocess.STDOUT, cwd=out)
    return python


def data_root(args: Args, out: Path) -> str:
    """The folder the runs read MNIST from; gzipped files (mode=prepare's) are unpacked under `out` first."""
    root = Path(args.data or os.environ.get("GAN_DATA_DIR") or ROOT / "data")
    packed = sorted(root.glob("MNIST/raw/*.gz"))
    if not packed:
        return str(root)
    unpacked = out / "data"
    (unpacked / "MNIST" / "raw").mkdir(parents=True, exist_ok=True)
    for path in packed:
        target = unpacked / "MNIST" / "raw" / path.stem
        if not target.exists():
            with gzip.open(path, "rb") as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
    return str(unpacked)


def figures(step: Step, output: str) -> dict:
    """What the report shows of a step: a run's status and times, the tests' summary, the machine's facts."""
    if step.name == "machine":
        return json.loads(output.strip().splitlines()[-1])
    if step.name == "tests":
        return {"summary": output.strip().splitlines()[-1] if output.strip() else ""}
    if step.run_dir is None or not (step.run_dir / "status.json").exists():
        return {}
    status = json.loads((step.run_dir / "status.json").read_text())
    metrics = status.get("metrics") or {}
    fit = status["ended"] - status["started"] if status.get("ended") and status.get("started") else None
    found = {"status": status.get("status"), "iterations": metrics.get("global_step"),
             "training_s": round(fit, 1) if fit else None, "wall_s": round(step.seconds, 1)}
    if fit and metrics.get("global_step"):
        found["it_per_s"] = round(metrics["global_step"] / fit, 1)
    found.update({k.split("/", 1)[1]: round(v, 2) for k, v in metrics.items() if k in ("metrics/fid", "metrics/kid")})
    return found


def report(steps: list[Step], args: Args, out: Path, started: float) -> None:
    """report.md (what a person reads) and report.json (the same figures), rewritten after each step."""
    failed = [s.name for s in steps if s.status == "FAILED"]
    lines = [f"# Device check, {time.strftime('%Y-%m-%d %H:%M:%S')}{' (dry run on the CPU)' if args.dry_run else ''}", "",
             f"revision {revision()}; {time.perf_counter() - started:.0f} s so far; "
             + (f"FAILED: {', '.join(failed)}" if failed else "no step failed"), ""]
    lines += summary({step.name: step for step in steps})
    for step in steps:
        command = shlex.join("<the versions and the card>" if part == MACHINE else part for part in step.command)
        lines += [f"## {step.title} ({step.name}): {step.status}, {step.seconds:.1f} s", "", f"`{command}`", ""]
        lines += [f"- {k}: {v}" for k, v in step.figures.items()]
        if step.tail:
            lines += ["", "```", step.tail, "```"]
        lines.append("")
    (out / "report.md").write_text("\n".join(lines))
    rows = [{k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(step).items()} for step in steps]
    (out / "report.json").write_text(json.dumps(rows, indent=1))


def summary(steps: dict[str, Step]) -> list[str]:
    """The figures the README's speed table takes, first."""
    def get(name: str, key: str):
        return steps[name].figures.get(key, "-") if name in steps else "-"

    def run(name: str) -> str:
        return (f"{get(name, 'iterations')} iterations: {get(name, 'wall_s')} s wall, {get(name, 'training_s')} s training, "
                f"{get(name, 'it_per_s')} it/s, FID {get(name, 'fid')}")

    ddp, plain = get("ddp", "it_per_s"), get("plain", "it_per_s")
    ratio = f" ({ddp / plain:.2f}x)" if isinstance(ddp, float) and isinstance(plain, float) else ""
    return ["| | |", "|---|---|",
            f"| card | {get('machine', 'card')}, driver {get('machine', 'driver')}, torch {get('machine', 'torch')}, "
            f"CUDA {get('machine', 'cuda')} |",
            f"| GPU tests | {get('tests', 'summary')} |",
            f"| the default run | {run('default')} |",
            f"| in bf16-mixed | {run('bf16')} |",
            f"| trainer=ddp, 1 device, against plain | {ddp} against {plain} it/s{ratio} |", ""]


def revision() -> str:
    done = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain"], capture_output=True, text=True).stdout.strip()
    return (done.stdout.strip() or "unknown") + (" with changes" if dirty else "")


def check(args: Args) -> int:
    out = Path(args.out).resolve()
    (out / "logs").mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out / "runs", ignore_errors=True)
    env = {**os.environ, "GAN_DATA_DIR": data_root(args, out), "PYTHONUNBUFFERED": "1"}
    started, python, steps = time.perf_counter(), sys.executable, plan(args, out)
    for step in steps:
        then, log_path = time.perf_counter(), out / "logs" / f"{step.name}.log"
        if any(s.name == "install" and s.status == "FAILED" for s in steps):
            step.status = "not run (the install failed)"
            continue
        try:
            with open(log_path, "w") as log:
                if step.name == "install":
                    python = install(args, out, log)  # every later step runs in the fresh environment
                else:
                    command = [python if part == PY else part for part in step.command]
                    done = subprocess.run(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=step.timeout)
                    if done.returncode:
                        raise subprocess.CalledProcessError(done.returncode, step.command[:3])
            step.seconds = time.perf_counter() - then
            step.figures = figures(step, log_path.read_text(errors="replace"))
            step.status = "ok"
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError, ValueError, KeyError) as exc:
            step.status, step.seconds = "FAILED", time.perf_counter() - then
            step.figures = {"error": f"{type(exc).__name__}: {exc}"}
        if step.name in ("bench", "precision") or step.status == "FAILED":
            step.tail = tail(log_path, 40 if step.status == "FAILED" else 60)
        report(steps, args, out, started)
        print(f"{step.name}: {step.status} ({step.seconds:.1f} s)", flush=True)
    failed = [s.name for s in steps if s.status != "ok"]
    print(f"report: {out / 'report.md'}" + (f"; FAILED or not run: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def tail(path: Path, n: int) -> str:
    """The last `n` lines of a log, each as a progress bar's last redraw left it."""
    lines = [line.rsplit("\r", 1)[-1] for line in path.read_text(errors="replace").splitlines()]
    return "\n".join([line for line in lines if line.strip()][-n:])


def prepare(args: Args) -> int:
    """The wheels of the project's dependencies a CUDA PyTorch image lacks, at the versions installed
    here, for CPython 3.12 on manylinux x86-64, and MNIST gzipped: what an offline GPU machine needs."""
    import importlib.metadata as metadata  # noqa: PLC0415

    from packaging.requirements import Requirement  # noqa: PLC0415 (pip's own dependency, where this runs)

    needed, todo = {}, ["gan"]
    while todo:
        name = re.sub(r"[-_.]+", "-", todo.pop()).lower()
        if name in needed or name in ON_GPU_IMAGES or name.startswith(SKIPPED_PREFIXES):
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        needed[name] = dist.version
        for line in dist.requires or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    needed.pop("gan")
    wheels = Path(args.to) / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    platforms = [f"--platform={p}" for p in ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
                                              "manylinux2014_x86_64", "manylinux1_x86_64")]
    download = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q", "-d", str(wheels)]
    wanted = [f"{name}=={version}" for name, version in sorted(needed.items())] + [BUILD_REQUIREMENT]
    for requirement in wanted:  # a wheel for that machine, else the source (built there: antlr4's 4.9.3)
        if subprocess.run([*download, "--only-binary=:all:", "--python-version=3.12", "--implementation=cp", *platforms,
                           requirement], stderr=subprocess.DEVNULL).returncode:
            subprocess.run([*download, "--no-binary=:all:", requirement], check=True)
    raw = Path(os.environ.get("GAN_DATA_DIR") or ROOT / "data") / "MNIST" / "raw"
    packed = Path(args.to) / "data" / "MNIST" / "raw"
    packed.mkdir(parents=True, exist_ok=True)
    for path in sorted(raw.glob("*-ubyte")):
        with open(path, "rb") as src, gzip.open(packed / f"{path.name}.gz", "wb") as dst:
            shutil.copyfileobj(src, dst)
    size = sum(p.stat().st_size for p in Path(args.to).rglob("*") if p.is_file()) / 2**20
    print(f"{len(wanted)} packages in {wheels}, MNIST in {packed.parent.parent}: {size:.1f} MiB. On the GPU machine:\n"
          f"  python3 -m gan.device_check out=<folder> data={Path(args.to) / 'data'} wheels={wheels}")
    return 0


def main() -> None:
    if {"-h", "--help"} & set(sys.argv[1:]):
        print(__doc__.strip())
        print("\noptions (key=value):")
        comments = dict(re.findall(r"^    (\w+):[^\n#]*#\s*(.+)$", inspect.getsource(Args), re.MULTILINE))
        for field in dataclasses.fields(Args):
            shown = str(field.default).lower() if field.default != "" else "empty"
            print(f"  {field.name:8s} {comments.get(field.name, '')} (default: {shown})")
        sys.exit(0)
    args = parse(sys.argv[1:])
    print(f"gan.device_check on {platform.node()}, python {platform.python_version()}", flush=True)
    sys.exit(prepare(args) if args.mode == "prepare" else check(args))


if __name__ == "__main__":
    main()
