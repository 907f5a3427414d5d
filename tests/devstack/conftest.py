"""Fixtures of the control-plane tests (helpers live in k8s_helpers)."""

from __future__ import annotations

import pytest
from k8s_helpers import Jobs
from mediaimport_dev.kube import Kube
from mediaimport_dev.nodeagent import NodeAgent


@pytest.fixture
def jobs(kube: Kube, namespace: str, node_agent: NodeAgent) -> Jobs:
    return Jobs(kube, namespace)
