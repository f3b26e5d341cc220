"""The expensive, stateless part of ``facevault enroll-batch``: decoding, detection and embedding of one
image (``analyze_job``: a ``Job`` in, an ``Analysis`` out, never raising), run over local worker
processes (``LocalRunner``) or as Ray tasks (``RayRunner``). Nothing here touches the vault.

The worker functions (``analyze_job``, ``_ray_analyze``) stay top-level functions of this module: other
processes (ProcessPoolExecutor, Ray) find them by module path when unpickling."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

from .. import crops, imaging
from ..crops import FaceCrop
from ..errors import FaceVaultError, InputError
from ..pipeline import Pipeline, ProcessedFace, run_in_worker, worker_pool


@dataclass
class Analysis:
    row: int
    sha256: str | None = None
    width: int = 0
    height: int = 0
    faces: list[ProcessedFace] = field(default_factory=list)
    error: tuple[str, str] | None = None  # (code, message)
    crop: FaceCrop | None = None  # of faces[0], when the job asked for one (collections with keep_crops)


@dataclass(frozen=True)
class Job:
    row: int
    image: str
    max_bytes: int
    max_pixels: int
    data: bytes | None = None  # shipped with the job when workers may not see the file (Ray)
    crop: bool = False  # also cut the face crop the collection keeps (crops.py)


def analyze_job(pipe: Pipeline, job: Job) -> Analysis:
    """Decode, detect and embed one image. Never raises: failures become the row's error."""
    try:
        if job.data is not None:
            decoded = imaging.decode_image(
                job.data, max_bytes=job.max_bytes, max_pixels=job.max_pixels, name=job.image
            )
        else:
            decoded = imaging.load_image(job.image, max_bytes=job.max_bytes, max_pixels=job.max_pixels)
        faces = pipe.analyze(decoded.pixels, portrait=True, upright=True)  # enrollment, as Vault.enroll
        crop = crops.make_crop(decoded.pixels, faces[0].face.box) if job.crop and faces else None
        return Analysis(job.row, decoded.sha256, decoded.width, decoded.height, faces, crop=crop)
    except FaceVaultError as exc:
        return Analysis(job.row, error=(exc.code, exc.message))
    except Exception as exc:  # one broken file must not stop the batch
        return Analysis(job.row, error=("internal_error", f"{type(exc).__name__}: {exc}"))


_ray_pipelines: dict[str, Pipeline] = {}


def _ray_analyze(model_id: str, settings: Any, jobs: list[Job]) -> list[Analysis]:
    """Body of the Ray task: a pipeline per model, cached in the (long-lived) Ray worker process."""
    key = f"{model_id}\x00{settings.detector}"  # a collection may choose its detector
    pipe = _ray_pipelines.get(key)
    if pipe is None:
        pipe = _ray_pipelines[key] = Pipeline.for_model(model_id, settings)
    return [analyze_job(pipe, job) for job in jobs]


class LocalRunner:
    """Jobs over ``workers`` local processes (each with its own models, as ``pipeline.map_with_pipeline``),
    with a bounded number in flight so a manifest of millions of rows is never queued at once. Results come
    back in completion order."""

    def __init__(self, workers: int, settings: Any) -> None:
        self.workers = max(1, workers)
        self.settings = settings

    def run(self, model_id: str, jobs: Iterable[Job], settings: Any = None) -> Iterator[Analysis]:
        """``settings``: those of this run's collections (their detector), else the runner's."""
        settings = settings or self.settings
        if self.workers == 1:
            pipe = Pipeline.for_model(model_id, settings)
            for job in jobs:
                yield analyze_job(pipe, job)
            return
        todo = iter(jobs)
        window = self.workers * 4
        pool = self._pool(model_id, settings)
        inflight: dict[Future[Analysis], tuple[Job, ProcessPoolExecutor]] = {}
        try:
            while True:
                for job in todo:
                    inflight[pool.submit(run_in_worker, (analyze_job, job))] = (job, pool)
                    if len(inflight) >= window:
                        break
                if not inflight:
                    return
                finished, _ = wait(inflight, return_when=FIRST_COMPLETED)
                for fut in finished:
                    job, owner = inflight.pop(fut)
                    try:
                        result = fut.result()
                    except BrokenProcessPool:
                        # A worker died (a decoder crash, out of memory): the rows its pool held fail,
                        # the batch goes on with a new pool, and `--retry-failed` redoes them later.
                        result = Analysis(job.row, error=("worker_failed", "the worker process died"))
                        if owner is pool:
                            pool.shutdown(wait=False, cancel_futures=True)
                            pool = self._pool(model_id, settings)
                    yield result
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _pool(self, model_id: str, settings: Any) -> ProcessPoolExecutor:
        return worker_pool(model_id, settings, self.workers)


class RayRunner:
    """The same jobs as Ray tasks on a Ray cluster (``address``: ``auto``, ``HOST:PORT`` or
    ``ray://HOST:PORT``). Image bytes travel with the task, so workers need no shared filesystem."""

    def __init__(self, address: str, settings: Any, *, rows_per_task: int = 4) -> None:
        try:
            import ray
        except ImportError as exc:
            raise InputError("--ray needs Ray: pip install 'facevault[ray]'") from exc
        self.ray = ray
        self.settings = settings
        self.rows_per_task = rows_per_task
        kwargs: dict[str, Any] = {"address": address, "log_to_driver": False}
        host = address.removeprefix("ray://").rsplit(":", 1)[0]
        if host in {"127.0.0.1", "localhost"}:
            kwargs["_node_ip_address"] = "127.0.0.1"  # a loopback cluster: keep the driver on loopback too
        self._owns = not ray.is_initialized()
        if self._owns:
            ray.init(**kwargs)
        self._task = ray.remote(num_cpus=1, max_retries=2)(_ray_analyze)

    def run(self, model_id: str, jobs: Iterable[Job], settings: Any = None) -> Iterator[Analysis]:
        settings = settings or self.settings
        ray = self.ray
        window = max(2, int(ray.cluster_resources().get("CPU", 1)) * 2)
        todo = iter(jobs)
        inflight: dict[Any, list[Job]] = {}
        while True:
            while len(inflight) < window:
                chunk = [self._with_bytes(j) for _, j in zip(range(self.rows_per_task), todo, strict=False)]
                if not chunk:
                    break
                inflight[self._task.remote(model_id, settings, chunk)] = chunk
            if not inflight:
                return
            done, _ = ray.wait(list(inflight), num_returns=1)
            for ref in done:
                chunk = inflight.pop(ref)
                try:
                    yield from ray.get(ref)
                except Exception as exc:  # the task failed after its retries
                    for job in chunk:
                        yield Analysis(job.row, error=("worker_failed", f"Ray task failed: {exc}"))

    def _with_bytes(self, job: Job) -> Job:
        try:
            data = imaging.read_file_bytes(job.image, max_bytes=job.max_bytes)
        except FaceVaultError:
            return job  # the worker reports the same error for the row
        return Job(job.row, job.image, job.max_bytes, job.max_pixels, data, job.crop)

    def close(self) -> None:
        if self._owns:
            self.ray.shutdown()
