"""A result is taken only from a pod its import's Job controls (owner references, by uid:
labels prove nothing)."""

from __future__ import annotations

from typing import Any

from mediaimport_operator.jobs import job_name
from mediaimport_operator.model import MediaImport
from mediaimport_operator.owners import sender_problem

MI = MediaImport.from_body({
    "metadata": {"namespace": "media", "name": "sunset", "uid": "mi-uid"},
    "spec": {"url": "https://example.com/a.mp4", "userId": "user-1"},
})
JOB = job_name(MI)


def owner(kind: str, name: str, uid: str, *, controller: bool = True) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": kind, "name": name, "uid": uid,
            "controller": controller}


def pod(uid: str = "pod-uid", refs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    refs = [owner("Job", JOB, "job-uid")] if refs is None else refs
    return {"metadata": {"name": f"{JOB}-abcde", "uid": uid, "ownerReferences": refs}}


def job(uid: str = "job-uid", mi_uid: str = "mi-uid") -> dict[str, Any]:
    return {"metadata": {"name": JOB, "uid": uid,
                         "ownerReferences": [owner("MediaImport", "sunset", mi_uid)]}}


def problem(p: dict[str, Any] | None, j: dict[str, Any] | None, uid: str = "pod-uid"
            ) -> str | None:
    return sender_problem(MI, pod_name=f"{JOB}-abcde", pod_uid=uid, pod=p, job=j)


def test_the_jobs_own_pod_may_send_the_result() -> None:
    assert problem(pod(), job()) is None


def test_any_other_sender_is_refused() -> None:
    cases = {
        "no such pod": problem(None, job()),
        "another uid": problem(pod(), job(), uid="other"),
        "no owner": problem(pod(refs=[]), job()),
        "owner not controller": problem(pod(refs=[owner("Job", JOB, "job-uid",
                                                        controller=False)]), job()),
        "another Job": problem(pod(refs=[owner("Job", "mi-other", "job-uid")]), job()),
        "not a Job": problem(pod(refs=[owner("ReplicaSet", JOB, "job-uid")]), job()),
        "no Job": problem(pod(), None),
        "an earlier Job of that name": problem(pod(), job(uid="new-job-uid")),
        "a Job of another import": problem(pod(), job(mi_uid="another-mi")),
    }
    for case, text in cases.items():
        assert text is not None and text.endswith("."), case
