"""core_api.storage.embedded against real servers: start, attach from a second process, reference-counted stop,
recovery from killed holders and stale state files, and state directories too long for a unix socket path.

Self-contained (no conftest fixtures): every test gets its own short state directory under /tmp, so its servers
never meet the suite's or the system's (those listen on 5432/6379; these use a unix socket and a free port).
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import ConnectionPool

from core_api.storage.embedded import EmbeddedHandles, EmbeddedServiceError, ServiceUrls, embedded_services
from core_api.storage.embedded._holders import _process_alive
from core_api.storage.embedded._postgres import _Postgres
from core_api.storage.embedded._redis import _Redis

REPO_ROOT = Path(__file__).resolve().parents[2]

# A second process holding the servers of argv[1]; prints what it got, then waits as argv[4] says.
HOLDER = """
import json, sys, time
from pathlib import Path
from core_api.storage.embedded import embedded_services

state_dir, postgres, redis, wait = Path(sys.argv[1]), sys.argv[2] == "1", sys.argv[3] == "1", sys.argv[4]
with embedded_services(state_dir, postgres=postgres, redis=redis) as handles:
    print(json.dumps({"database_url": handles.database_url, "redis_url": handles.redis_url,
                      "postgres_pid": handles.postgres_pid, "redis_pid": handles.redis_pid}), flush=True)
    if wait == "stdin":
        sys.stdin.readline()
    elif wait == "forever":
        time.sleep(600)
"""


@pytest.fixture
def state_dir() -> Iterator[Path]:
    """A short, fresh state directory; whatever a failed test left running in it is stopped afterwards."""
    path = Path(tempfile.mkdtemp(prefix="fd", dir="/tmp"))
    try:
        yield path
    finally:
        for pgdata in path.rglob("pg"):
            if (pgdata / "postmaster.pid").exists():
                _Postgres(pgdata).stop(lambda _m: None)
        for server_json in path.rglob("server.json"):
            _Redis(server_json.parent).stop(lambda _m: None)
        shutil.rmtree(path, ignore_errors=True)


def spawn_holder(state_dir: Path, *, postgres: bool = True, redis: bool = True, wait: str = "none") -> Any:
    return subprocess.Popen(  # noqa: S603
        [sys.executable, "-c", HOLDER, str(state_dir), str(int(postgres)), str(int(redis)), wait],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def read_handles(proc: subprocess.Popen[str]) -> dict[str, Any]:
    """The handles a holder process printed once it holds the servers."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 60)
    line = proc.stdout.readline() if ready else ""
    if not line:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"holder process printed nothing; stderr:\n{err}")
    return json.loads(line)


def start_holder(state_dir: Path, *, postgres: bool = True, redis: bool = True, wait: str = "none") -> Any:
    """Run HOLDER in a subprocess; return (process, the handles it printed)."""
    proc = spawn_holder(state_dir, postgres=postgres, redis=redis, wait=wait)
    return proc, read_handles(proc)


def finish(proc: subprocess.Popen[str]) -> None:
    _, err = proc.communicate(input="\n", timeout=60)
    assert proc.returncode == 0, err


def wait_dead(pid: int, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while _process_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def assert_serving(handles: EmbeddedHandles | dict[str, Any]) -> None:
    urls = handles if isinstance(handles, dict) else vars(handles)
    with psycopg.connect(urls["database_url"], connect_timeout=5) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    client = redis.Redis.from_url(urls["redis_url"], socket_timeout=5)
    try:
        assert client.ping()
    finally:
        client.close()


def assert_stopped(state_dir: Path, handles: EmbeddedHandles | dict[str, Any]) -> None:
    pids = handles if isinstance(handles, dict) else vars(handles)
    for key in ("postgres_pid", "redis_pid"):
        if pids[key] is not None:
            assert wait_dead(pids[key]), f"{key} {pids[key]} still running"
    assert not (state_dir / "pg" / "postmaster.pid").exists()
    assert not (state_dir / "redis" / "server.json").exists()
    for name in ("postgres", "redis"):
        holders = state_dir / "run" / f"{name}.holders.json"
        assert not holders.exists() or json.loads(holders.read_text()) == []


def test_start_connect_create_database_and_stop(state_dir: Path) -> None:
    messages: list[str] = []
    with embedded_services(state_dir, on_progress=messages.append) as handles:
        assert handles.database_url
        assert handles.redis_url
        assert handles.redis_url.startswith("redis://127.0.0.1:")
        assert handles.redis_url.endswith("/0")
        assert conninfo_to_dict(handles.database_url)["host"] == str(state_dir / "pg")
        assert handles.service_urls() == ServiceUrls(handles.database_url, handles.redis_url)

        with psycopg.connect(handles.database_url, autocommit=True) as conn:
            conn.execute("CREATE DATABASE fd_template")
            with psycopg.connect(make_conninfo(handles.database_url, dbname="fd_template"), autocommit=True) as tpl:
                tpl.execute("CREATE TABLE marker (x int); INSERT INTO marker VALUES (42)")
            conn.execute("CREATE DATABASE fd_clone TEMPLATE fd_template STRATEGY FILE_COPY")
        clone_url = make_conninfo(handles.database_url, dbname="fd_clone")

        async def read_clone() -> Any:
            async with await psycopg.AsyncConnection.connect(clone_url) as conn:
                cur = await conn.execute("SELECT x FROM marker")
                return await cur.fetchone()

        assert asyncio.run(read_clone()) == (42,)
        with ConnectionPool(clone_url, min_size=1, max_size=2, open=True) as pool, pool.connection() as conn:
            assert conn.execute("SELECT current_database()").fetchone() == ("fd_clone",)

        client = redis.Redis.from_url(handles.redis_url)
        client.set("k", "v")
        assert client.get("k") == b"v"
        client.close()

    assert any("PostgreSQL" in m for m in messages)
    assert any("starting Redis" in m for m in messages)
    assert_stopped(state_dir, handles)

    # A restart keeps the data (PostgreSQL cluster and Redis append-only file).
    with embedded_services(state_dir) as again:
        client = redis.Redis.from_url(again.redis_url or "")
        assert client.get("k") == b"v"
        client.close()
        with psycopg.connect(make_conninfo(again.database_url or "", dbname="fd_clone")) as conn:
            assert conn.execute("SELECT x FROM marker").fetchone() == (42,)
    assert_stopped(state_dir, again)


def test_second_process_attaches_and_last_holder_stops(state_dir: Path) -> None:
    with embedded_services(state_dir) as handles:
        # A short-lived second process attaches to the same servers, and its exit does not stop them.
        proc, seen = start_holder(state_dir)
        finish(proc)
        assert (seen["postgres_pid"], seen["redis_pid"]) == (handles.postgres_pid, handles.redis_pid)
        assert (seen["database_url"], seen["redis_url"]) == (handles.database_url, handles.redis_url)
        assert_serving(handles)

        # Another one attaches and outlives this process's hold ...
        proc, seen = start_holder(state_dir, wait="stdin")
        assert (seen["postgres_pid"], seen["redis_pid"]) == (handles.postgres_pid, handles.redis_pid)
    assert_serving(handles)  # ... so releasing here stops nothing,

    finish(proc)  # and the last holder (not the process that started them) stops both.
    assert_stopped(state_dir, handles)


def test_concurrent_starts_share_one_server(state_dir: Path) -> None:
    procs = [spawn_holder(state_dir, wait="stdin") for _ in range(3)]
    seen = [read_handles(p) for p in procs]
    assert len({(s["postgres_pid"], s["redis_pid"], s["database_url"], s["redis_url"]) for s in seen}) == 1
    assert_serving(seen[0])
    for proc in procs:
        finish(proc)
    assert_stopped(state_dir, seen[0])


def test_killed_holder_is_pruned_and_its_servers_adopted(state_dir: Path) -> None:
    proc, seen = start_holder(state_dir, wait="forever")
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert _process_alive(seen["postgres_pid"])
    assert _process_alive(seen["redis_pid"])

    with embedded_services(state_dir) as handles:
        assert (handles.postgres_pid, handles.redis_pid) == (seen["postgres_pid"], seen["redis_pid"])
        holders = json.loads((state_dir / "run" / "redis.holders.json").read_text())
        assert [h["pid"] for h in holders] == [os.getpid()]
        assert_serving(handles)
    assert_stopped(state_dir, handles)  # the dead holder does not keep them alive


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])  # noqa: S607
    proc.wait()
    return proc.pid


def test_stale_state_files_are_recovered(state_dir: Path) -> None:
    # Redis: a server.json and a holder whose processes died (kill -9, reboot).
    (state_dir / "redis").mkdir()
    (state_dir / "run").mkdir()
    stale = dead_pid()
    (state_dir / "redis" / "server.json").write_text(json.dumps({"pid": stale, "port": 1}))
    (state_dir / "run" / "redis.holders.json").write_text(json.dumps([{"pid": stale, "started": 1.0, "token": "x"}]))
    with embedded_services(state_dir, postgres=False) as handles:
        assert handles.database_url is None
        assert handles.postgres_pid is None
        assert handles.redis_pid != stale
        assert json.loads((state_dir / "redis" / "server.json").read_text())["pid"] == handles.redis_pid
        assert redis.Redis.from_url(handles.redis_url or "").ping()
    assert_stopped(state_dir, handles)

    # PostgreSQL: a postmaster.pid left by a postmaster that is gone.
    with embedded_services(state_dir, redis=False) as handles:
        assert handles.redis_url is None
        pid_file = (state_dir / "pg" / "postmaster.pid").read_text()
    assert_stopped(state_dir, handles)
    (state_dir / "pg" / "postmaster.pid").write_text(pid_file.replace(str(handles.postgres_pid), str(stale), 1))
    with embedded_services(state_dir, redis=False) as again:
        assert again.postgres_pid not in (stale, handles.postgres_pid)
        with psycopg.connect(again.database_url or "") as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    assert_stopped(state_dir, again)


def test_long_state_dir_path(state_dir: Path) -> None:
    long_dir = state_dir / ("a" * 60) / ("b" * 60)
    assert len(str(long_dir / "pg" / ".s.PGSQL.5432")) > 108  # beyond sun_path
    with embedded_services(long_dir) as handles:
        socket_dir = conninfo_to_dict(handles.database_url or "")["host"]
        assert socket_dir
        assert len(f"{socket_dir}/.s.PGSQL.5432") < 100
        assert_serving(handles)
        proc, seen = start_holder(long_dir)
        finish(proc)
        assert seen["database_url"] == handles.database_url
    assert_stopped(long_dir, handles)


def test_failed_start_raises_with_log_tail(state_dir: Path) -> None:
    pgdata = state_dir / "pg"
    pgdata.mkdir()
    (pgdata / "PG_VERSION").write_text("not a cluster\n")  # looks initialised, cannot start
    with pytest.raises(EmbeddedServiceError, match=r"PostgreSQL .* failed to start(.|\n)*last lines of"):  # noqa: SIM117
        with embedded_services(state_dir, redis=False):
            pass
    holders = state_dir / "run" / "postgres.holders.json"
    assert not holders.exists() or json.loads(holders.read_text()) == []


def test_service_urls_needs_both() -> None:
    handles = EmbeddedHandles(database_url=None, redis_url="redis://127.0.0.1:1/0")
    assert handles.service_urls(database_url="postgresql:///x").database_url == "postgresql:///x"
    with pytest.raises(ValueError, match="database_url"):
        handles.service_urls()
