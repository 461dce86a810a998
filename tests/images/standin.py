"""Stand-in base images, for a machine that reaches no image registry but does reach a Debian mirror.

``FROM python:3.11.7-slim-bookworm`` (and the CUDA image, and the etcd and Prometheus images of the
compose file) cannot be pulled here. In their place:

- ``debian``: ``debootstrap --variant=minbase bookworm`` from the Debian mirror that apt on this
  machine already uses (read from the apt sources at run time), made slim the way Debian's own
  ``-slim`` images are (no docs, man pages or locales; apt keeps no caches), then ``podman import``.
- ``cuda-base``: that with ca-certificates, standing in for ``nvidia/cuda:...-ubuntu22.04`` (Ubuntu
  is not in Debian's mirror, and CUDA is not there at all).
- ``python``: that, plus Debian's Python 3.11 with a virtual environment at ``/usr/local``, so that
  ``python`` and ``pip`` are on PATH as in the official image.
- ``etcd``, ``prometheus``: Debian's ``etcd-server`` (+ ``etcd-client``) and ``prometheus`` packages.

Each is kept in podman's local storage with a label holding a hash of its recipe, and rebuilt only
when it is missing or its recipe (or the image below it) changed: a machine builds them once.

    python tests/images/standin.py          # build (or find) them all; prints their names
"""

from __future__ import annotations

import glob
import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

if __package__:
    from .imagelib import CACHE, HERE, REPORT, Engine
else:  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from imagelib import CACHE, HERE, REPORT, Engine  # type: ignore[no-redef]  # the same names, run as a script

DEBIAN = "localhost/aiges-standin/debian:bookworm-slim"
PYTHON = "localhost/aiges-standin/python:3.11-slim-bookworm"
CUDA = "localhost/aiges-standin/cuda-base:bookworm"
ETCD = "localhost/aiges-standin/etcd:bookworm"
PROMETHEUS = "localhost/aiges-standin/prometheus:bookworm"
LABEL = "org.aiges.standin.recipe"
SUITE = "bookworm"

# Debian's slim images: leave documentation out of every package installed later too.
DPKG_EXCLUDES = """\
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
"""
# As in Debian's docker images: no package caches or translations kept by apt.
_CLEAN = "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"
APT_CLEAN = f"""\
DPkg::Post-Invoke {{ "{_CLEAN}"; }};
APT::Update::Post-Invoke {{ "{_CLEAN}"; }};
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
Acquire::Languages "none";
"""


def apt_sources() -> list[tuple[str, list[str], list[str]]]:
    """(URI, suites, components) of each ``deb`` source in this machine's apt sources, one-line
    (``sources.list``, ``*.list``) and deb822 (``*.sources``) formats both."""
    found: list[tuple[str, list[str], list[str]]] = []
    one_line = ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*.list"))]
    for path in one_line:
        try:
            lines = Path(path).read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            words = re.sub(r"\[[^\]]*\]", " ", line.split("#", 1)[0]).split()
            if len(words) >= 3 and words[0] == "deb":
                found.append((words[1], [words[2]], words[3:]))
    for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        try:
            text = Path(path).read_text()
        except OSError:
            continue
        for stanza in re.split(r"\n\s*\n", text):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line or line[:1].isspace():
                    continue
                name, value = line.split(":", 1)
                fields[name.strip().lower()] = value.strip()
            if fields.get("enabled", "yes").lower() == "no" or "deb" not in fields.get("types", "").split():
                continue
            for uri in fields.get("uris", "").split():
                found.append((uri, fields.get("suites", "").split(), fields.get("components", "").split()))
    return found


def debian_mirror(suite: str = SUITE) -> str | None:
    """The mirror apt uses here for ``suite`` main (an http(s) or file URI), or None."""
    for uri, suites, components in apt_sources():
        if suite in suites and "main" in components and uri.split(":", 1)[0] in ("http", "https", "file"):
            return uri
    return None


def recipe_hash(*parts: str | bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() if isinstance(part, str) else part)
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def build_debian(engine: Engine, mirror: str) -> bool:
    """The minbase image; True when it was built now, False when the cached one is current."""
    recipe = recipe_hash(SUITE, "minbase", DPKG_EXCLUDES, APT_CLEAN, mirror)
    if engine.label(DEBIAN, LABEL) == recipe:
        return False
    debootstrap = shutil.which("debootstrap")
    if debootstrap is None:
        raise RuntimeError("debootstrap is not installed (Debian package debootstrap)")
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="debootstrap-", dir=CACHE) as work:
        rootfs = Path(work) / "rootfs"
        log = CACHE / "logs" / "debootstrap.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "w") as out:
            result = subprocess.run(
                [debootstrap, "--variant=minbase", SUITE, str(rootfs), mirror],
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=900,
            )
        if result.returncode != 0:
            raise RuntimeError(f"debootstrap failed ({result.returncode}):\n{log.read_text()[-4000:]}")
        (rootfs / "etc/dpkg/dpkg.cfg.d/docker-slim").write_text(DPKG_EXCLUDES)
        (rootfs / "etc/apt/apt.conf.d/docker-clean").write_text(APT_CLEAN)
        for pattern in (
            "usr/share/doc/*/*",
            "usr/share/man/*",
            "usr/share/info/*",
            "usr/share/locale/*",
            "usr/share/groff/*",
            "usr/share/lintian/*",
            "var/cache/apt/*",
            "var/lib/apt/lists/*",
            "var/cache/debconf/*-old",
            "var/log/*.log",
            "var/log/apt/*",
        ):
            for path in rootfs.glob(pattern):
                if path.name == "copyright":
                    continue
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", "-", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(
            [
                engine.podman_path,
                "import",
                "--change",
                'CMD ["bash"]',
                "--change",
                f"LABEL {LABEL}={recipe}",
                "--change",
                "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "-",
                DEBIAN,
            ],
            stdin=tar.stdout,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert tar.stdout is not None  # stdout=PIPE
        tar.stdout.close()
        if tar.wait() != 0 or imported.returncode != 0:
            raise RuntimeError(f"podman import failed: {imported.stderr}")
    return True


def build_on(engine: Engine, tag: str, containerfile: str, base: str) -> bool:
    """An image from one of tests/images/standin/*.Containerfile on ``base``; True when built now."""
    path = HERE / "standin" / containerfile
    recipe = recipe_hash(path.read_bytes(), engine.image(base)["Id"])
    if engine.label(tag, LABEL) == recipe:
        return False
    # No CA bundle mounted: these builds install ca-certificates, which writes that file.
    engine.build(tag, path, path.parent, build_args={"BASE_IMAGE": base}, labels={LABEL: recipe}, ca_bundle=False)
    return True


def ensure(engine: Engine, *wanted: str) -> dict[str, bool]:
    """Build (or find current) the stand-ins named; returns {image: built now}."""
    mirror = debian_mirror()
    if mirror is None:
        raise RuntimeError(f"no Debian {SUITE} mirror in /etc/apt/sources.list*: cannot debootstrap a stand-in")
    built = {DEBIAN: build_debian(engine, mirror)}
    recipes = {
        PYTHON: "python.Containerfile",
        CUDA: "cuda.Containerfile",
        ETCD: "etcd.Containerfile",
        PROMETHEUS: "prometheus.Containerfile",
    }
    for tag in wanted:
        if tag in recipes:
            built[tag] = build_on(engine, tag, recipes[tag], DEBIAN)
    return built


def ensure_noted(engine: Engine, *wanted: str) -> None:
    """``ensure``, noting each stand-in's size and whether it was built now for the tests' summary."""
    for image, built in ensure(engine, *wanted).items():
        entry = REPORT.setdefault("standins", {}).setdefault(image, {"built": False})
        entry.update(built=entry["built"] or built, size=engine.image_size(image))


if __name__ == "__main__":
    engine = Engine(CACHE / "conf")
    for image, now in ensure(engine, PYTHON, CUDA, ETCD, PROMETHEUS).items():
        print(f"{image}: {'built' if now else 'cached'}, {engine.image_size(image) >> 20} MiB")
