"""grpo-host tracker plugin: a training run as an MLflow run.

Provides the ``mlflow`` tracker (``tracking: [mlflow]`` in a run config). This module is what
the entry point loads, so it imports neither mlflow nor anything heavy: the tracker imports
mlflow when a run starts.
"""

from __future__ import annotations

import grpo_host
from grpo_tracking_mlflow.tracker import MlflowTracker, resolve_tracking_uri

__all__ = ["MlflowTracker", "resolve_tracking_uri", "grpo_trackers"]


@grpo_host.hookimpl
def grpo_trackers():
    return [MlflowTracker()]
