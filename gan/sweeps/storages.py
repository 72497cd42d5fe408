"""Where an Optuna study lives, and how processes that share it take turns.

`hydra.sweeper.storage` is one of:
- `sqlite:///<file>` (the default, `outputs/optuna/<study>/optuna.db`): one machine. SQLite on a
  shared file system under concurrent writers is what Optuna's documentation warns against.
- any SQLAlchemy URL of a database server, `postgresql://user@host:5432/db`,
  `mysql+pymysql://...`: several machines (the driver must be installed: `.[postgres]`).
- `journal:///<absolute path>` (as a file:// URL: `journal:///shared/studies/fid.log`;
  `journal://study.log` is relative): Optuna's journal storage, an append-only log on a shared
  file system (NFS included), for several machines without a database server.

`check` says in one paragraph what is wrong with a storage (a malformed URL, a driver that is not
installed, a server that does not answer, a journal that cannot be written) before any trial runs.
`study_lock` is what sweepers sharing a study take while they count its trials and ask for the
next, so that together they run exactly `n_trials`: a file lock beside a SQLite file, the
journal's own symlink lock (safe on NFS) beside a journal, an advisory lock in a PostgreSQL or
MySQL server.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gan.errors import UserError

JOURNAL = "journal://"  # journal:///shared/study.log: the absolute path, as in a file:// URL
SQLITE = "sqlite:///"
SQLITE_WAIT_S = 60  # how long a SQLite writer waits for another process's transaction before failing


def journal_path(url: str) -> Path | None:
    return Path(url.removeprefix(JOURNAL)).expanduser() if url.startswith(JOURNAL) else None


def local_file(url: str) -> Path | None:
    """The file a SQLite or journal storage lives in; None for a database server."""
    return Path(url.removeprefix(SQLITE)).expanduser() if url.startswith(SQLITE) else journal_path(url)


def reason_of(exc: BaseException, limit: int) -> str:
    """What a storage call's failure says, on one line: the driver's own message, not SQLAlchemy's wrapper."""
    return " ".join(str(getattr(exc, "orig", exc) or exc).split())[:limit]


def shown(url: str) -> str:
    """A storage URL as a message prints it: the password hidden."""
    if url.startswith(JOURNAL) or "@" not in url:
        return url
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("://", 1)[0] + "://***"


def open_storage(url: str | None) -> Any:
    """The Optuna storage `url` names, with what several processes need: a journal's log, or an
    RDB storage whose SQLite writers wait for each other rather than fail (None: in memory)."""
    import optuna

    if url is None:
        return None

    if (path := journal_path(url)) is not None:
        from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock

        return optuna.storages.JournalStorage(JournalFileBackend(str(path), lock_obj=JournalFileSymlinkLock(str(path))))
    engine = {"connect_args": {"timeout": SQLITE_WAIT_S}} if url.startswith(SQLITE) else {"pool_pre_ping": True}
    return optuna.storages.RDBStorage(url, engine_kwargs=engine)


def check(url: str | None, key: str = "hydra.sweeper.storage") -> None:
    """One paragraph for a storage that cannot work, before any trial runs."""
    if url is None:
        return
    if (path := journal_path(url)) is not None:
        folder = path.parent
        if not str(path.name):
            raise UserError(f"{key}={url}: name the journal file, journal:///<folder>/<study>.log (an absolute path).")
        if not folder.is_dir():
            raise UserError(f"{key}={url}: the folder {folder} does not exist; create it (on the file system every "
                            f"sweeper sees) or name another.")
        if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
            raise UserError(f"{key}={url}: {path if path.exists() else folder} is not writable by this process; every "
                            f"sweeper appends to the journal.")
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

    try:
        parsed = make_url(url)
    except ArgumentError:
        raise UserError(f"{key}={url}: not a storage URL. Give sqlite:///<file>, a database server's SQLAlchemy URL "
                        f"(postgresql://user@host:5432/db, mysql+pymysql://...) or journal:///<file>.") from None
    if parsed.get_backend_name() == "sqlite":
        where = Path(parsed.database or "").expanduser()
        if parsed.database and not where.parent.is_dir():
            where.parent.mkdir(parents=True, exist_ok=True)
        return
    try:
        engine = create_engine(url, pool_pre_ping=True, connect_args=connect_timeout(parsed.get_backend_name()))
    except (NoSuchModuleError, ModuleNotFoundError, ImportError) as exc:
        raise UserError(f"{key}={shown(url)}: the {parsed.drivername} driver is not installed ({exc}); for PostgreSQL: "
                        f"pip install -e \".[postgres]\" (psycopg2), for MySQL: pip install pymysql.") from None
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        raise UserError(f"{key}={shown(url)}: the database does not answer ({reason_of(exc, 240)}). Start it, or check the host, "
                        f"port, user and database in the URL; nothing has run.") from None
    finally:
        engine.dispose()


def connect_timeout(backend: str) -> dict[str, Any]:
    return {"connect_timeout": 10} if backend in ("postgresql", "mysql") else {}


@contextmanager
def study_lock(url: str | None, study_name: str) -> Iterator[None]:
    """Held while a sweeper counts the study's trials and asks for the next one (a study in memory
    has one sweeper: nothing to hold)."""
    if url is None:
        yield
        return
    if (path := journal_path(url)) is not None:
        from optuna.storages.journal import JournalFileSymlinkLock

        lock = JournalFileSymlinkLock(f"{path}.{study_name}.ask")
        lock.acquire()
        try:
            yield
        finally:
            lock.release()
        return
    if url.startswith(SQLITE):
        from filelock import FileLock

        with FileLock(f"{local_file(url)}.{study_name}.lock"):
            yield
        return
    with server_lock(url, study_name):
        yield


@contextmanager
def server_lock(url: str, study_name: str) -> Iterator[None]:
    """An advisory lock held by a connection of its own: PostgreSQL's pg_advisory_lock, MySQL's GET_LOCK."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    engine = create_engine(url, poolclass=NullPool)
    backend = engine.dialect.name
    key = zlib.crc32(f"gan-optuna-ask:{study_name}".encode())
    try:
        with engine.connect() as connection:
            if backend == "postgresql":
                connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
                unlock = ("SELECT pg_advisory_unlock(:key)", {"key": key})
            elif backend in ("mysql", "mariadb"):
                connection.execute(text("SELECT GET_LOCK(:name, -1)"), {"name": f"gan-optuna-{key}"})
                unlock = ("SELECT RELEASE_LOCK(:name)", {"name": f"gan-optuna-{key}"})
            else:
                raise UserError(f"hydra.sweeper.storage={shown(url)}: sweepers sharing a study take turns through "
                                f"PostgreSQL's or MySQL's locks, a SQLite file's or a journal's; {backend} has none here.")
            connection.commit()
            try:
                yield
            finally:
                connection.execute(text(unlock[0]), unlock[1])
                connection.commit()
    finally:
        engine.dispose()
