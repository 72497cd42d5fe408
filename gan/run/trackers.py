"""Experiment trackers beside TensorBoard: MLflow and Weights & Biases as the run's loggers.

Both are Lightning's loggers with what a run here needs on top:
- a tracker's outage never costs training: every call to it goes through `Unsent`, which
  counts what could not be sent, warns once, pauses sending for a while, and the run's end says
  what is missing (the run folder has all of it: events, status.json, images/);
- the tracker's run id is kept in the run folder (`trackers.json`), so a resume continues the
  same tracker run (or starts a linked one, and says which) and the job's end gives it
  status.json's final status (`finish`);
- a sweep's jobs are grouped the tracker's way: one MLflow parent run per sweep folder, its jobs
  nested under it; one W&B group.
Images and texts reach every logger through `publish_image` / `publish_text`, whatever it is.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import torch
from pytorch_lightning.loggers import Logger, MLFlowLogger, TensorBoardLogger, WandbLogger
from torchvision.transforms.functional import to_pil_image

from gan.config.hydra_runtime import choices, in_sweep, overrides, sweep_folder, sweeper
from gan.files import write_json
from gan.run.folders import outputs_root
from gan.run.names import sweep_arguments, swept_keys

log = logging.getLogger(__name__)

TRACKERS_FILE = "trackers.json"  # in the run folder: which tracker run holds this run
PAUSE_AFTER_FAILURE = 30.0  # seconds a tracker is left alone after a failed call (what comes meanwhile is counted)
# MLflow retries a failed request for minutes by default: here a request that fails is counted and the run goes on
# (and the run's link is said once, in the run's ending, not by MLflow at every status change)
MLFLOW_QUICK_FAILURE = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                        "MLFLOW_HTTP_REQUEST_TIMEOUT": "10", "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}

# status.json's final word -> the tracker's run status; gan.status (a tag) keeps the word itself
MLFLOW_STATUS = {"completed": "FINISHED", "stopped": "FAILED", "diverged": "FAILED", "failed": "FAILED",
                 "pruned": "KILLED", "interrupted": "KILLED"}


class Unsent:
    """What a tracker could not take. A failed call is counted, warned about once, and the
    tracker is left alone for PAUSE_AFTER_FAILURE seconds (calls then are counted, not tried)."""

    def __init__(self, tracker: str):
        self.tracker, self.counts, self.first_error, self.paused_until = tracker, Counter(), None, 0.0

    def call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if time.monotonic() < self.paused_until:
            self.counts[what] += 1
            return None
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # any failure of the tracker's client: training goes on
            self.counts[what] += 1
            self.paused_until = time.monotonic() + PAUSE_AFTER_FAILURE
            if self.first_error is None:
                self.first_error = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:300]}"
                log.warning("%s did not take the %s (%s); training goes on, the run folder keeps everything, and "
                            "the run's end says what was not sent.", self.tracker, what, self.first_error)
            return None

    def report(self) -> str | None:
        if not self.counts:
            return None
        what = ", ".join(f"{n} {kind}" for kind, n in self.counts.items())
        return (f"{self.tracker} did not receive: {what} (first error: {self.first_error}). The run folder has all of it "
                f"(events, status.json, images/).")


def without_run_folder(params: Mapping[str, Any], run_dir: Path) -> dict[str, Any]:
    """The parameters a tracker compares runs by: the config less the paths inside the run folder
    (checkpoints, images, the folder itself), which differ in every run and would crowd out the
    keys a sweep varies in the tracker's comparison views. The folder is the run's tag gan.run_folder."""
    inside = (str(run_dir), str(Path(run_dir).resolve()))
    return {key: value for key, value in params.items() if not str(value).startswith(inside)}


def image_of(grid: torch.Tensor):
    """A (C, H, W) grid in [0, 1] as a PIL image."""
    return to_pil_image(grid.detach().float().clamp(0, 1).cpu())


def publish_image(loggers: Iterable[Logger], tag: str, grid: torch.Tensor, step: int) -> None:
    """`grid` (C, H, W in [0, 1]) as image `tag` at `step`, in every logger that keeps images."""
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_image(tag, grid, step)
        elif isinstance(logger, (MLflowTracker, WandbTracker)):
            logger.log_picture(tag, grid, step)


def publish_text(loggers: Iterable[Logger], tag: str, text: str) -> None:
    """`text` (Markdown) as text `tag`, in every logger that keeps texts."""
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_text(tag, text, 0)
        elif isinstance(logger, (MLflowTracker, WandbTracker)):
            logger.log_document(tag, text)


def previous_trackers(resume_from: str | None) -> dict[str, Any]:
    """The trackers.json of the run folder a resume starts from ({} for a fresh run)."""
    if not resume_from:
        return {}
    path = Path(resume_from)
    folder = path if path.is_dir() else path.parent.parent if path.parent.name == "checkpoints" else path.parent
    try:
        value = json.loads((folder / TRACKERS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def record(run_dir: str | Path, tracker: str, entry: Mapping[str, Any]) -> None:
    """Add this run's `tracker` entry to its trackers.json."""
    path = Path(run_dir) / TRACKERS_FILE
    try:
        current = json.loads(path.read_text()) if path.exists() else {}
    except ValueError:
        current = {}
    write_json(path, {**current, tracker: dict(entry)})


def where_to_look(folder: str | Path) -> list[str]:
    """How to open the tracker runs of a run folder (its trackers.json) or of a sweep folder (its
    MLflow parent run): a link for a server or an online W&B run, else the command that shows them."""
    folder, lines = Path(folder), []
    try:
        known = json.loads((folder / TRACKERS_FILE).read_text())
    except (OSError, ValueError):
        known = {}
    try:
        parent = json.loads((folder / "mlflow_parent.json").read_text())
    except (OSError, ValueError):
        parent = {}
    mlflow_run = (known.get("mlflow") if isinstance(known, dict) else None) or parent
    if isinstance(mlflow_run, dict) and mlflow_run.get("run_id"):
        uri, run_id = str(mlflow_run.get("tracking_uri")), mlflow_run["run_id"]
        if uri.startswith(("http://", "https://")):
            experiment = mlflow_run.get("experiment_id")
            lines.append(f"{uri.rstrip('/')}/#/experiments/{experiment}/runs/{run_id}" if experiment
                         else f"{uri} (run {run_id})")
        else:
            lines.append(f"mlflow ui --backend-store-uri {uri}  (run {run_id})")
    wandb_run = known.get("wandb") if isinstance(known, dict) else None
    if isinstance(wandb_run, dict) and wandb_run.get("id"):
        lines.append(wandb_run["url"] if wandb_run.get("url") else f"wandb sync {wandb_run.get('dir')}  (W&B run "
                     f"{wandb_run['id']}, kept offline)")
    return lines


def sweep_name() -> str | None:
    """The sweep this job is one of, as a tracker names it: the study's name, or the sweep folder under outputs/."""
    if not in_sweep():
        return None
    study = sweeper().get("study_name")
    if study:
        return str(study)
    folder = sweep_folder().resolve()
    outputs = (Path.cwd() / "outputs").resolve()
    return str(folder.relative_to(outputs)) if folder.is_relative_to(outputs) else folder.name


def run_label(run_dir: str | Path) -> str:
    """A tracker run's name: a sweep's job by its folder (`3_lr-1e-4`, nested under the sweep), a
    single run by its folder under outputs/ (`2026-12-04/21-05-03`)."""
    folder = Path(run_dir).resolve()
    outputs = (Path.cwd() / "outputs").resolve()
    return folder.name if in_sweep() or not folder.is_relative_to(outputs) else str(folder.relative_to(outputs))


def run_tags(run_dir: str | Path) -> dict[str, str]:
    """What every tracker run is tagged with: the experiment, the overrides, the run folder (and the sweep)."""
    tags = {"gan.experiment": str(choices().get("experiment") or "default"), "gan.overrides": " ".join(overrides()) or "(none)",
            "gan.run_folder": str(Path(run_dir).resolve())}
    if sweep_name():
        tags["gan.sweep"] = sweep_name()
    return tags


def server_problems(resolved: Mapping[str, Any]) -> list[str]:
    """A tracker that cannot work: its package missing, its server unreachable, W&B online without a key."""
    import importlib.util

    problems = []
    for name, node in (resolved.get("logger") or {}).items():
        target = str((node or {}).get("_target_", ""))
        if target.endswith(("MLflowTracker", "MLFlowLogger")):
            if importlib.util.find_spec("mlflow") is None:
                problems.append(f"`logger.{name}` needs MLflow, which is not installed: pip install -e \".[mlflow]\"")
                continue
            uri = str(node.get("tracking_uri") or "")
            if uri.startswith(("http://", "https://")) and (why := unreachable(uri)):
                problems.append(f"`logger.{name}.tracking_uri={uri}`: the MLflow server does not answer ({why}); "
                                f"start it (mlflow server --host 127.0.0.1 --port ...) or use the local store "
                                f"(leave tracking_uri out: a SQLite file under outputs/)")
        elif target.endswith(("WandbTracker", "WandbLogger")):
            if importlib.util.find_spec("wandb") is None:
                problems.append(f"`logger.{name}` needs Weights & Biases, which is not installed: pip install -e \".[wandb]\"")
                continue
            mode = wandb_mode(str(node.get("mode") or "auto"))
            if mode == "online" and not wandb_key():
                problems.append(f"`logger.{name}.mode=online`: no W&B API key (WANDB_API_KEY, or `wandb login`); "
                                f"set one, or use mode=offline (sync later with `wandb sync`) or mode=auto")
    return problems


def unreachable(uri: str, timeout: float = 5.0) -> str | None:
    """Why an MLflow server at `uri` does not answer its health check (None when it does)."""
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as response:
            return None if response.status == 200 else f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return str(getattr(exc, "reason", exc))


def local_store() -> str:
    """The default MLflow store: a SQLite file beside the runs (debug= smoke runs: their own)."""
    return f"sqlite:///{(Path(outputs_root(choices().get('debug'))) / 'mlflow.db').resolve()}"


class LazyClient:
    """An MlflowClient made on first use. Making one opens its store (a SQLite file is created and
    migrated), which only the process that logs should do: the other processes of a DDP run build
    the logger too, and would race to migrate the same file."""

    def __init__(self, tracking_uri: str):
        self._uri, self._client = tracking_uri, None

    def __getattr__(self, name: str) -> Any:
        if self._client is None:
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(self._uri)
        return getattr(self._client, name)


class MLflowTracker(MLFlowLogger):
    """Lightning's MLFlowLogger for a run of this project: the default store is a SQLite file
    (artifacts beside it); a resume continues the run its folder's trackers.json names; a sweep's
    job is nested under its sweep's parent run; the tracker's outages are counted, not raised."""

    def __init__(self, run_dir: str, resume_from: str | None = None, experiment_name: str = "gan",
                 tracking_uri: str | None = None, artifact_location: str | None = None,
                 run_name: str | None = None, tags: dict[str, str] | None = None):
        tracking_uri = tracking_uri or local_store()
        for key, value in MLFLOW_QUICK_FAILURE.items():
            os.environ.setdefault(key, value)
        if artifact_location is None and tracking_uri.startswith("sqlite:///"):  # a local store keeps its artifacts beside it
            artifact_location = (Path(tracking_uri.removeprefix("sqlite:///")).parent / "mlartifacts").resolve().as_uri()
        self.run_dir, self.unsent, self.note = Path(run_dir), Unsent(f"MLflow ({tracking_uri})"), None
        self.previous = previous_trackers(resume_from).get("mlflow") or previous_trackers(str(run_dir)).get("mlflow") or {}
        import mlflow.tracking

        client, mlflow.tracking.MlflowClient = mlflow.tracking.MlflowClient, LazyClient  # what Lightning builds at once
        try:
            super().__init__(experiment_name=experiment_name, run_name=run_name or run_label(run_dir),
                             tracking_uri=tracking_uri, tags={**run_tags(run_dir), **(tags or {})},
                             artifact_location=artifact_location)
        finally:
            mlflow.tracking.MlflowClient = client

    def start(self) -> None:
        """Create (or find again) the tracker run before training: a store that refuses stops the run here."""
        if self._tracking_uri.startswith("sqlite:///"):
            Path(self._tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        previous = self.previous
        if previous.get("run_id") and previous.get("tracking_uri") == self._tracking_uri:
            try:
                self._mlflow_client.get_run(previous["run_id"])
                self._run_id = previous["run_id"]
                self._mlflow_client.update_run(self._run_id, status="RUNNING")
                self._mlflow_client.set_tag(self._run_id, "gan.resumed_in", str(self.run_dir.resolve()))
                self.note = f"MLflow: continuing run {self._run_id}"
            except Exception:  # deleted, or another store: a new run, linked to the old one
                self.tags = {**(self.tags or {}), "gan.resumed_from": previous["run_id"]}
                self.note = f"MLflow: run {previous['run_id']} is not in {self._tracking_uri}; a new run links to it"
        elif previous.get("run_id"):
            self.tags = {**(self.tags or {}), "gan.resumed_from": previous["run_id"]}
            self.note = f"MLflow: the resumed run was in {previous.get('tracking_uri')}; a new run here links to it"
        if self._run_id is None and in_sweep():
            self.tags = {**(self.tags or {}), "mlflow.parentRunId": self.parent_run()}
        _ = self.experiment  # creates the run
        record(self.run_dir, "mlflow", {"tracking_uri": self._tracking_uri, "experiment_id": self._experiment_id,
                                        "run_id": self._run_id})
        if self.note:
            log.info("%s.", self.note)

    def parent_run(self) -> str:
        """The sweep's parent run, created by the sweep's first job (under a lock in the sweep folder)."""
        from filelock import FileLock

        folder = sweep_folder()
        path = folder / "mlflow_parent.json"
        with FileLock(str(folder / ".mlflow_parent.lock")):
            try:
                known = json.loads(path.read_text())
            except (OSError, ValueError):
                known = {}
            if known.get("tracking_uri") == self._tracking_uri and known.get("run_id"):
                self._mlflow_client.update_run(known["run_id"], status="RUNNING")
                return known["run_id"]
            experiment = self._mlflow_client.get_experiment_by_name(self._experiment_name)
            self._experiment_id = experiment.experiment_id if experiment is not None and \
                experiment.lifecycle_stage != "deleted" else \
                self._mlflow_client.create_experiment(self._experiment_name, artifact_location=self._artifact_location)
            name, keys = sweep_name(), swept_keys()
            parent = self._mlflow_client.create_run(self._experiment_id, run_name=name, tags={
                "gan.sweep": name, "gan.sweep_folder": str(folder.resolve()), "gan.swept_keys": " ".join(keys)})
            self._mlflow_client.log_batch(parent.info.run_id, params=search_space(keys))
            write_json(path, {"tracking_uri": self._tracking_uri, "experiment_id": self._experiment_id,
                              "run_id": parent.info.run_id})
            return parent.info.run_id

    def log_hyperparams(self, params: Any) -> None:
        params = without_run_folder(params, self.run_dir)
        if self.previous.get("run_id") == self._run_id:  # the same run again: MLflow refuses a parameter changed
            run = self.unsent.call("parameters", self.experiment.get_run, self.run_id)
            known = run.data.params if run is not None else {}
            params = {k: v for k, v in params.items() if k not in known}
        self.unsent.call("parameters", super().log_hyperparams, params)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self.unsent.call("metric batches", super().log_metrics, metrics, step)

    def log_picture(self, tag: str, grid: torch.Tensor, step: int) -> None:
        self.unsent.call("images", self.experiment.log_image, self.run_id, image_of(grid), key=tag, step=step)

    def log_document(self, tag: str, text: str) -> None:
        self.unsent.call("texts", self.experiment.log_text, self.run_id, text, f"{tag}.md")

    def finalize(self, status: str = "success") -> None:
        self.unsent.call("status updates", super().finalize, status)

    def finish(self, status: str, metrics: Mapping[str, float] | None = None) -> None:
        """status.json's final word as the run's status (and tag gan.status); what was not sent, said."""
        if self._initialized and status in MLFLOW_STATUS:
            self.unsent.call("status updates", self.experiment.set_tag, self.run_id, "gan.status", status)
            self.unsent.call("status updates", self.experiment.set_terminated, self.run_id, MLFLOW_STATUS[status])
            parent = (self.tags or {}).get("mlflow.parentRunId")
            if parent:
                self.unsent.call("status updates", self.end_parent, parent)
        if (report := self.unsent.report()) is not None:
            log.warning("%s", report)

    def end_parent(self, parent: str) -> None:
        """The sweep's parent run ends with its last running job."""
        running = self.experiment.search_runs([self._experiment_id], f"tags.mlflow.parentRunId = '{parent}' "
                                              "and attributes.status = 'RUNNING'", max_results=1)
        if not running:
            self.experiment.set_terminated(parent, "FINISHED")


def add_evaluation(ckpt: str | Path, step: int, protocol: str, scores: Mapping[str, Any], images: Iterable[Path]) -> str | None:
    """gan.evaluate's scores (metrics `evaluate/<protocol>/<name>` at the checkpoint's iteration)
    and its pictures (artifacts under `evaluations/`) in the MLflow run that holds the checkpoint's
    run, as its trackers.json names it. What happened, in a line; None when the run had no MLflow
    run. A tracker that does not answer costs the evaluation nothing: it is said, not raised."""
    entry = previous_trackers(str(ckpt)).get("mlflow") or {}
    run_id, uri = entry.get("run_id"), entry.get("tracking_uri")
    if not run_id or not uri:
        return None
    numbers = {f"evaluate/{protocol}/{name}": float(value) for name, value in flat_scores(scores).items()}
    for key, value in MLFLOW_QUICK_FAILURE.items():
        os.environ.setdefault(key, value)
    try:
        from mlflow.entities import Metric
        from mlflow.tracking import MlflowClient

        client, now = MlflowClient(uri), int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric(key, value, now, step) for key, value in numbers.items()])
        for image in images:
            client.log_artifact(run_id, str(image), "evaluations")
    except Exception as exc:  # not installed here, the server gone, the run deleted: the scores are printed anyway
        return (f"MLflow ({uri}) did not take the evaluation for run {run_id} ({type(exc).__name__}: "
                f"{(str(exc).splitlines() or [''])[0][:200]}); the scores are printed above.")
    return f"MLflow: {len(numbers)} scores at iteration {step} and the pictures added to run {run_id} ({uri})."


def flat_scores(scores: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The numbers of a nested result ({'fid': 3.1, 'floor': {'fid': 0.4}} -> fid, floor_fid), finite ones only."""
    flat = {}
    for key, value in scores.items():
        if isinstance(value, Mapping):
            flat.update(flat_scores(value, f"{prefix}{key}_"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            flat[f"{prefix}{key}"] = float(value)
    return flat


def search_space(keys: list[str]) -> list:
    """The sweep's parent run's parameters: each swept key with what the sweep gives it (`8,16`,
    `choice(hinge, minimax)`, `interval(1e-4, 1e-3)`), as typed."""
    from mlflow.entities import Param

    given = dict(argument.lstrip("+~").split("=", 1) for argument in sweep_arguments(sweep_folder()) if "=" in argument)
    return [Param(key, str(given[key])[:6000]) for key in keys if key in given]


def wandb_key() -> bool:
    """Whether a W&B API key is set (WANDB_API_KEY, or `wandb login`'s netrc entry)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    import netrc

    try:
        return netrc.netrc().authenticators(os.environ.get("WANDB_BASE_URL", "api.wandb.ai").split("//")[-1]) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def wandb_mode(mode: str) -> str:
    """online, offline or disabled: WANDB_MODE when set; `auto`: online with a key, else offline."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    return ("online" if wandb_key() else "offline") if mode == "auto" else mode


class WandbTracker(WandbLogger):
    """Lightning's WandbLogger for a run of this project: the W&B run's files in the run folder,
    offline (never a prompt, never a hang) when no key is set and `mode=auto`; a sweep's jobs in
    one group; a resume continues the W&B run its folder's trackers.json names."""

    def __init__(self, run_dir: str, resume_from: str | None = None, project: str = "gan",
                 mode: Literal["auto", "online", "offline"] = "auto", entity: str | None = None,
                 tags: list[str] | None = None):
        import wandb

        self.run_dir, self.mode = Path(run_dir), wandb_mode(mode)
        self.unsent = Unsent(f"W&B ({self.mode})")
        previous = previous_trackers(resume_from).get("wandb") or previous_trackers(str(run_dir)).get("wandb") or {}
        self.wandb_id = previous.get("id") or uuid.uuid4().hex[:8]
        super().__init__(name=run_label(run_dir), save_dir=str(self.run_dir), id=self.wandb_id, project=project,
                         entity=entity, offline=self.mode == "offline", group=sweep_name(), resume="allow",
                         tags=list(tags or []), notes=run_tags(run_dir)["gan.overrides"],
                         settings=wandb.Settings(mode=self.mode, silent=True, console="off"))

    def start(self) -> None:
        _ = self.experiment  # creates the run
        self.experiment.config.update(run_tags(self.run_dir), allow_val_change=True)
        record(self.run_dir, "wandb", {"id": self.wandb_id, "project": self._project, "mode": self.mode,
                                       "dir": str(Path(self.experiment.dir).parent),
                                       "url": self.experiment.url if self.mode == "online" else None})

    def log_hyperparams(self, params: Any) -> None:
        self.unsent.call("parameters", super().log_hyperparams, without_run_folder(params, self.run_dir))

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self.unsent.call("metric batches", super().log_metrics, metrics, step)

    def log_picture(self, tag: str, grid: torch.Tensor, step: int) -> None:
        self.unsent.call("images", self.log_image, tag, [image_of(grid)], step)

    def log_document(self, tag: str, text: str) -> None:
        """A file of the W&B run (its Files tab), not a history entry."""
        self.unsent.call("texts", (Path(self.experiment.dir) / f"{tag}.md").write_text, text)

    def finish(self, status: str, metrics: Mapping[str, float] | None = None) -> None:
        """The final metrics in the run's summary, status.json's word as `gan/status`; the W&B run ends."""
        if self._experiment is None:
            return
        summary = {k: v for k, v in (metrics or {}).items() if isinstance(v, (int, float))}
        self.unsent.call("summary", self._experiment.summary.update, {**summary, "gan/status": status})
        self.unsent.call("status updates", self._experiment.finish, exit_code=0 if status == "completed" else 1)
        if (report := self.unsent.report()) is not None:
            log.warning("%s", report)


TRACKERS = (MLflowTracker, WandbTracker)
RUNNING: list[Logger] = []  # this process's job's trackers, for `finish`


def start(loggers: Iterable[Logger]) -> None:
    """Create each tracker's run before training (a store that refuses stops the run before it starts)."""
    from gan.errors import UserError

    RUNNING.clear()
    for logger in loggers:
        if isinstance(logger, TRACKERS):
            try:
                logger.start()
            except Exception as exc:
                raise UserError(f"{type(logger).__name__} could not start its run ({type(exc).__name__}: "
                                f"{str(exc).splitlines()[0] if str(exc) else ''}); check the logger's settings "
                                f"(tracking_uri, project) and that the tracker is reachable.") from None
            RUNNING.append(logger)


def finish(status: str, metrics: Mapping[str, float] | None = None) -> None:
    """The job's final status (status.json's word) in each tracker run it started."""
    while RUNNING:
        RUNNING.pop(0).finish(status, metrics)
