"""Fixtures of the cluster tests (helpers live in k8s_helpers)."""

from __future__ import annotations

import pytest
from k8s_helpers import Jobs
from mediaimport_dev.kube import Kube


@pytest.fixture
def jobs(kube: Kube, namespace: str, job_image: str) -> Jobs:
    return Jobs(kube, namespace, job_image)
