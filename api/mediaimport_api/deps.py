"""What routes depend on: the caller, and the process's shared services."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from mediaimport_job.netguard import AddressPolicy
from mediaimport_operator.db import Database
from mediaimport_operator.kube import Kube

from .auth import TokenStore
from .errors import ApiProblem
from .imports import Imports
from .presign import Presigner
from .readiness import Readiness
from .settings import Settings
from .watch import ImportWatch


@dataclass
class Services:
    settings: Settings
    kube: Kube
    db: Database
    tokens: TokenStore
    watch: ImportWatch
    imports: Imports
    presigner: Presigner
    policy: AddressPolicy
    readiness: Readiness


# Both are coroutines: FastAPI runs a plain function dependency in its thread pool, a
# thread hand-off per request for what is an attribute lookup.
async def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


async def current_user(request: Request) -> str:
    # The check itself ran in AuthMiddleware, first; openapi.py documents the scheme.
    user = getattr(request.state, "user", None)
    if not isinstance(user, str):  # only if a route escaped the middleware's prefix
        raise ApiProblem(401, "unauthorized", "A bearer token is required.",
                         headers={"WWW-Authenticate": 'Bearer realm="mediaimport"'})
    return user


ServicesDep = Annotated[Services, Depends(services)]
UserDep = Annotated[str, Depends(current_user)]
