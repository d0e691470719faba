"""The worker: loads a tunasync worker config, runs jobs, records their events, obeys commands."""

from mirrorbus.worker.config import load_worker_config
from mirrorbus.worker.service import Worker

__all__ = ["Worker", "load_worker_config"]
