"""The API part of `mediaimport-dev demo`: the same sample imported through HTTP and
through a signed Replicate webhook delivery, each followed to Ready, with a presigned URL.

Needs the stack's environment (`mediaimport-dev env`): MEDIAIMPORT_API_URL,
MEDIAIMPORT_API_TOKEN and MEDIAIMPORT_WEBHOOK_SECRET.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import requests
from mediaimport_api.signatures import sign_headers

READY_TIMEOUT = 180.0


class _Api:
    def __init__(self, env: dict[str, str]) -> None:
        self.url = env["MEDIAIMPORT_API_URL"]
        self.headers = {"Authorization": f"Bearer {env['MEDIAIMPORT_API_TOKEN']}"}
        self.secret = env["MEDIAIMPORT_WEBHOOK_SECRET"]

    def call(self, method: str, path: str, *, timeout: float = 60, **kwargs: Any
             ) -> requests.Response:
        return requests.request(method, self.url + path, headers=self.headers,
                                timeout=timeout, **kwargs)

    def follow(self, name: str) -> dict[str, Any]:
        """Print the import's server-sent events until it finishes; its last state."""
        last: dict[str, Any] = {}
        answer = self.call("GET", f"/api/v1/imports/{name}/events", stream=True,
                           timeout=READY_TIMEOUT)
        answer.raise_for_status()
        for line in answer.iter_lines(decode_unicode=True):
            if line.startswith("data:"):
                last = json.loads(line[5:])
                print(f"  event: {last['status']:9} phase {last['phase']}", flush=True)
        return last

    def show_asset(self, asset_id: str) -> bool:
        deadline = time.monotonic() + 30
        asset: dict[str, Any] = {}
        while time.monotonic() < deadline:  # the row follows the status within moments
            asset = self.call("GET", f"/api/v1/media/{asset_id}").json()
            if asset.get("status") != "uploading":
                break
            time.sleep(0.5)
        print(f"  asset {asset_id}: {asset.get('status')}, {asset.get('size')} bytes, "
              f"{asset.get('type')}, sha256 {asset.get('checksum')}")
        if asset.get("status") != "ready":
            return False
        fetched = requests.get(asset["url"], timeout=60)
        print(f"  presigned URL (1 hour; GET gave {fetched.status_code}, "
              f"{len(fetched.content)} bytes):\n  {asset['url']}")
        return fetched.ok and len(fetched.content) == asset["size"]


def run_api_demo(env: dict[str, str], source_url: str) -> bool:
    api = _Api(env)
    print(f"\n== POST {api.url}/api/v1/media/import-from-url", flush=True)
    answer = api.call("POST", "/api/v1/media/import-from-url", json={
        "url": source_url, "type": "video",
        "metadata": {"prompt": "a test card drifting across the screen", "via": "api"},
    })
    print(f"  {answer.status_code} {answer.text}")
    if answer.status_code != 202:
        return False
    accepted = answer.json()
    api.follow(accepted["metadata"]["import_job_id"])
    ok = api.show_asset(accepted["id"])

    print("\n== a signed Replicate webhook delivery", flush=True)
    issued = api.call("POST", "/api/v1/webhooks/replicate/urls",
                      json={"metadata": {"project": "demo"}}).json()
    print(f"  webhook URL: {issued['url'][:100]}...")
    prediction = {
        "id": f"demo{uuid.uuid4().hex[:22]}", "model": "local/testsrc2", "status": "succeeded",
        "input": {"prompt": "a test card drifting across the screen"}, "output": [source_url],
        "logs": "", "error": None,
    }
    body = json.dumps(prediction).encode()
    headers = {**sign_headers(api.secret, f"msg_{uuid.uuid4().hex}", body),
               "Content-Type": "application/json"}
    delivered = requests.post(issued["url"], data=body, headers=headers, timeout=30)
    print(f"  {delivered.status_code} {delivered.text}")
    if delivered.status_code != 200:
        return False
    [made] = delivered.json()["imports"]
    again = requests.post(issued["url"], data=body, headers=headers, timeout=30)
    print(f"  redelivered: {again.status_code} {again.text} (nothing new created)")
    api.follow(made["import_job_id"])
    return api.show_asset(made["id"]) and ok
