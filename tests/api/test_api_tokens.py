"""The tokens file: its format, and a token added or removed without a restart."""

from __future__ import annotations

import asyncio
from pathlib import Path

from mediaimport_api.auth import TokenStore, hash_token, parse_tokens


def test_parse_tokens_reads_hashes_and_users_and_skips_bad_lines() -> None:
    good = hash_token("secret-1")
    text = "\n".join([
        "# team tokens", "", f"{good} user-1", f"{good.upper()[:-1]}X user-2",
        f"{hash_token('t2')} ../evil", f"{hash_token('t3')}", f"  {hash_token('t4')}   a@b.c  ",
    ])
    tokens, problems = parse_tokens(text)
    assert tokens == {good: "user-1", hash_token("t4"): "a@b.c"}
    assert [p.split(":")[0] for p in problems] == ["line 4", "line 5", "line 6"]


def test_a_token_added_or_removed_takes_effect_without_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text(f"{hash_token('first')} user-1\n")

    async def scenario() -> list[str | None]:
        store = TokenStore(path)
        seen = [await store.user_for("first"), await store.user_for("second")]
        path.write_text(f"{hash_token('second')} user-2\n")
        seen.append(await store.user_for("second"))  # unknown: the file is read again
        await store.refresh()
        seen.append(await store.user_for("first"))
        return seen

    assert asyncio.run(scenario()) == ["user-1", None, "user-2", None]
