"""A throwaway PostgreSQL server for the tests and benchmarks.

``PgServer.start()`` runs Debian's ``initdb`` in a temporary directory as an unprivileged user
(``postgres`` when it exists, else a system user ``flg_pg`` created for it), and starts the
server on 127.0.0.1 on a free port, with its unix socket in the same directory and TLS on, with
a self-signed certificate made at start. ``stop()`` stops it and removes the directory.

The session fixture ``pg_server`` (imported by conftest.py) starts one for the whole test run.
When no server can be started, every test that uses it fails with the reason: it never skips.
``scripts/install-test-servers.sh`` installs the server when it is missing.
"""

from __future__ import annotations

import datetime
import glob
import ipaddress
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

SUPERUSER = "flg"
PASSWORD = "flg-test-password"


class PgServerError(RuntimeError):
    """The test server could not be started; the message says why."""


def _find_bindir() -> Path:
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if found:
        return Path(found[-1]).parent
    which = shutil.which("initdb")
    if which:
        return Path(which).parent
    raise PgServerError(
        "PostgreSQL's initdb was not found (looked in /usr/lib/postgresql/*/bin and PATH): "
        "run scripts/install-test-servers.sh (as root) to install Debian's postgresql package"
    )


def _server_user() -> str | None:
    """The user to run the server as, or None to run it as ourselves (when not root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "flg_pg"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            pass
    try:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "flg_pg"],
            check=True,
            capture_output=True,
            text=True,
        )
    except (OSError, subprocess.CalledProcessError) as e:
        detail = getattr(e, "stderr", "") or str(e)
        raise PgServerError(
            f"cannot create the system user flg_pg to run PostgreSQL: {detail}"
        ) from e
    return "flg_pg"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _self_signed_cert(cert_path: Path, key_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


class PgServer:
    """One throwaway server. ``url()``/``conninfo()`` name a database on it."""

    def __init__(self, *, durable: bool = False) -> None:
        self.durable = durable
        self.bindir = _find_bindir()
        self.user = _server_user()
        self.dir = Path(tempfile.mkdtemp(prefix="flg-pg-"))
        self.data = self.dir / "data"
        self.port = _free_port()
        self.host = "127.0.0.1"
        self.password = PASSWORD
        self.superuser = SUPERUSER
        self.cert = self.dir / "server.crt"
        self.started = False

    # -- running commands as the server's user --------------------------------------------

    def _run(self, args: list[str], *, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [str(a) for a in args]
        if self.user is not None:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=self.dir, timeout=120)
        if check and proc.returncode != 0:
            raise PgServerError(
                f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}"
                + self._log_tail()
            )
        return proc

    def _log_tail(self) -> str:
        log = self.dir / "server.log"
        if log.exists():
            return "\nserver log:\n" + "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        return ""

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> PgServer:
        try:
            self._init()
            self._pg_ctl("start")
        except BaseException:
            self.stop()
            raise
        self.started = True
        return self

    def _init(self) -> None:
        pwfile = self.dir / "pwfile"
        pwfile.write_text(self.password + "\n")
        key = self.dir / "server.key"
        _self_signed_cert(self.cert, key)
        os.chmod(self.dir, 0o700)
        os.chmod(key, 0o600)
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            for p in [self.dir, pwfile, key, self.cert]:
                os.chown(p, entry.pw_uid, entry.pw_gid)
        self._run(
            [
                self.bindir / "initdb",
                "-D",
                self.data,
                "-U",
                self.superuser,
                "--pwfile",
                pwfile,
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
            ]
        )
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.dir}'",
            "max_connections": "300",
            "shared_buffers": "128MB",
            "ssl": "on",
            "ssl_cert_file": f"'{self.cert}'",
            "ssl_key_file": f"'{key}'",
            "log_min_messages": "warning",
        }
        if not self.durable:
            # Throwaway test data: no fsync (the tests never pull the power).
            settings.update(
                {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
            )
        conf = self.data / "postgresql.conf"
        with open(conf, "a") as f:
            f.write("\n# fast-langgraph test server\n")
            for k, v in settings.items():
                f.write(f"{k} = {v}\n")

    def _pg_ctl(self, action: str) -> None:
        args = [self.bindir / "pg_ctl", "-D", self.data, "-w", "-t", "60"]
        if action == "start":
            args += ["-l", self.dir / "server.log", "start"]
        elif action == "restart":
            args += ["-l", self.dir / "server.log", "-m", "fast", "restart"]
        else:
            args += ["-m", "fast", "stop"]
        self._run(args)

    def restart(self) -> None:
        """Restart the server (every connection to it is dropped)."""
        self._pg_ctl("restart")

    def stop(self) -> None:
        if self.started:
            self._run(
                [self.bindir / "pg_ctl", "-D", self.data, "-m", "immediate", "stop"], check=False
            )
            self.started = False
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- addresses --------------------------------------------------------------------------

    def url(self, dbname: str = "postgres", **params: str) -> str:
        """A ``postgresql://`` URL over TCP with the password."""
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return f"postgresql://{self.superuser}:{self.password}@{self.host}:{self.port}/{dbname}" + (
            f"?{query}" if query else ""
        )

    def conninfo(self, dbname: str = "postgres", **params: str) -> str:
        """A libpq key/value string over TCP with the password."""
        items = {
            "host": self.host,
            "port": str(self.port),
            "user": self.superuser,
            "password": self.password,
            "dbname": dbname,
            **params,
        }
        return " ".join(f"{k}={v}" for k, v in items.items())

    def socket_conninfo(self, dbname: str = "postgres") -> str:
        """A key/value string over the unix socket (trust authentication)."""
        return f"host={self.dir} port={self.port} user={self.superuser} dbname={dbname}"

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        """Run SQL through psql over the unix socket; returns its output."""
        proc = self._run(
            [
                self.bindir / "psql",
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                self.dir,
                "-p",
                str(self.port),
                "-U",
                self.superuser,
                "-d",
                dbname,
                "-c",
                sql,
            ]
        )
        return proc.stdout.strip()

    def create_database(self, prefix: str = "t", *, icu_locale: str | None = None) -> str:
        """A new empty database; returns its name. With ``icu_locale`` (such as ``"en-US"``),
        its default collation is that ICU locale's, as on most production servers (whose
        databases take a linguistic collation such as en_US.UTF-8), where the server's own
        databases use byte order (``--locale=C``)."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        if icu_locale is None:
            self.psql(f'CREATE DATABASE "{name}"')
        else:
            if "'" in icu_locale:
                raise ValueError(f"icu_locale must not contain a quote: {icu_locale!r}")
            self.psql(
                f'CREATE DATABASE "{name}" TEMPLATE template0 LOCALE_PROVIDER icu '
                f"ICU_LOCALE '{icu_locale}' LOCALE 'C.UTF-8'"
            )
        return name


@pytest.fixture(scope="session")
def pg_server():
    """The session's throwaway PostgreSQL server. Fails (never skips) when it cannot start."""
    try:
        server = PgServer().start()
    except (PgServerError, OSError, subprocess.SubprocessError) as e:
        pytest.fail(f"cannot start the PostgreSQL test server: {e}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_db(pg_server):
    """A fresh database on the session server; yields its URL."""
    return pg_server.url(pg_server.create_database())


def put_values(saver, thread_id, values, parent=None, metadata=None):
    """Puts a checkpoint of ``values`` (every channel at a new version) on ``thread_id``'s
    root namespace, after the checkpoint ``parent`` if given; returns the put's config."""
    from conftest import cfg
    from langgraph.checkpoint.base import empty_checkpoint

    cp = empty_checkpoint()
    cp["channel_values"] = values
    cp["channel_versions"] = {k: saver.get_next_version(None, None) for k in values}
    conf = cfg(thread_id, checkpoint_ns="")
    if parent:
        conf["configurable"]["checkpoint_id"] = parent
    return saver.put(conf, cp, metadata or {"source": "input", "step": -1}, cp["channel_versions"])
