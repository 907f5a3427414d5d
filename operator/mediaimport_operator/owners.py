"""Whether a pod that sends a result is one of its import's Job (pure).

Labels prove nothing (anyone who may create pods can copy them); the owner references
that the API server keeps do: the pod's controller is the import's Job (by name and uid),
and that Job's controller is the import (by uid). The Job controller adopts an orphan pod
whose labels match its selector, so this check alone stops little: the channel
credential, and the bucket, prefix and object checks of the result, are what protect.
"""

from __future__ import annotations

from typing import Any

from .jobs import job_name
from .model import MediaImport

Json = dict[str, Any]


def controller_of(body: Json) -> Json | None:
    """The owner reference with ``controller: true`` of an object, if any."""
    refs = (body.get("metadata") or {}).get("ownerReferences") or []
    return next((ref for ref in refs if isinstance(ref, dict) and ref.get("controller")), None)


def sender_problem(
    mi: MediaImport, *, pod_name: str, pod_uid: str, pod: Json | None, job: Json | None
) -> str | None:
    """Why the pod ``pod_name`` (uid ``pod_uid``, as the sender says) may not speak for
    ``mi``: ``pod`` and ``job`` are what the API server holds (None: not found)."""
    expected_job = job_name(mi)
    if pod is None:
        return f"There is no pod {pod_name} in namespace {mi.ref.namespace}."
    if (pod.get("metadata") or {}).get("uid") != pod_uid:
        return f"The pod {pod_name} has another uid than the sender's."
    owner = controller_of(pod)
    if owner is None or owner.get("kind") != "Job" or owner.get("name") != expected_job:
        return f"The pod {pod_name} is not controlled by the import's Job {expected_job}."
    return _job_problem(mi, job, expected_job, owner_uid=owner.get("uid"), pod_name=pod_name)


def _job_problem(
    mi: MediaImport, job: Json | None, name: str, *, owner_uid: object, pod_name: str
) -> str | None:
    if job is None:
        return f"The import's Job {name} does not exist."
    if (job.get("metadata") or {}).get("uid") != owner_uid:
        return f"The pod {pod_name} is controlled by an earlier Job named {name}."
    job_owner = controller_of(job)
    if job_owner is None or job_owner.get("uid") != mi.ref.uid:
        return f"The Job {name} is not controlled by this import."
    return None
