#!/usr/bin/env python3
"""Permissively licensed Python source from Debian's python3-* packages, for the bundled model.

The standard library alone (tools/data/corpus.py) is 2.9 M training tokens: a
model that sees it five times memorizes it. This adds the Python code of
Debian 12 (bookworm) packages whose licenses allow redistributing a model
trained on them. For each package in PACKAGES:

  1. `apt-get download` fetches its .deb (no root, no installation);
  2. its machine-readable copyright file (DEP-5, /usr/share/doc/<pkg>/copyright)
     is read: the package is KEPT only if every `Files:` paragraph outside
     debian/* carries a permissive license (LICENSE_OK: MIT/Expat, BSD, Apache,
     PSF, ISC, zlib, HPND, ZPL, public domain, CC0, Unlicense); a copyleft or
     unknown license anywhere in it, or a copyright file that is not DEP-5,
     rejects the whole package, with the reason recorded;
  3. the .py files it installs under /usr/lib/python3/dist-packages are read.

Files are then filtered as code datasets do (StarCoder's rules): not UTF-8,
larger than 256 kB, a line longer than 1,000 characters, a mean line longer
than 100, or less than 25% alphanumeric characters -> dropped (generated tables,
minified data). Exact duplicates (same bytes) and near duplicates (MinHash over
5-word shingles, estimated Jaccard similarity >= 0.7, the StarCoder setting)
are removed, the standard library included: a package file that is a copy of
a held-out standard-library file, or close to one, goes, so the held-out split
stays unseen.

Held-out rule for package files, like corpus.py's: the key
"debian/<package>/<path under dist-packages>" is held out iff
int(sha256(key)[:16], 16) % 100 < HELD_OUT_PERCENT. The model card's held-out
loss stays measured on the standard library's held-out files, which every model
of the project is compared on.

    python3 tools/data/packages.py [--cache .train/debs] [--manifest .train/packages.json]

writes the manifest (per package its version, license(s), kept or why not,
files and characters kept; per kept file its key, split and sha256) and the
corpus, .train/corpus/corpus-NN.jsonl.xz: every kept file, standard library
and packages, one JSON object {"key", "split", "text"} a line, a portable
copy of the whole deduplicated Python corpus (a machine without Debian's
standard library can build the training data from it). It comes in shards of
about SHARD_CHARS characters (about 14 MB each, compressed), so that each fits
beside the repository in one transfer to a device machine: shard 00 holds the
whole standard library and a uniform sample of the packages (their files
ordered by the hash of their keys), every further shard another sample, so
any first few shards are a fair subset.
`tools/data/model_data.py --corpus .train/corpus/*.jsonl.xz` reads them.
Needs numpy; apt-get and dpkg-deb.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import lzma
import pathlib
import re
import subprocess
import sys
import tarfile
from typing import Iterable, Optional

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from corpus import corpus_files, file_key, read_text  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
HELD_OUT_PERCENT = 5
SITE = "usr/lib/python3/dist-packages/"

# Large, well-kept, mostly-Python code bases (the license check decides; a
# package it rejects is listed in the manifest with the reason).
PACKAGES = """
python3-numpy python3-scipy python3-sympy python3-django python3-networkx python3-pandas python3-sklearn
python3-twisted python3-requests python3-urllib3 python3-flask python3-werkzeug python3-jinja2 python3-click
python3-attr python3-pytest python3-setuptools python3-pip python3-docutils python3-sphinx python3-pygments
python3-babel python3-sqlalchemy python3-tornado python3-botocore python3-boto3 python3-cryptography python3-nltk
python3-astropy python3-dask python3-distributed python3-toolz python3-pyparsing python3-dateutil python3-tz
python3-simplejson python3-yaml python3-lxml python3-bs4 python3-html5lib python3-numba python3-h5py
python3-statsmodels python3-skimage python3-pil python3-openpyxl python3-markdown python3-mako python3-alembic
python3-celery python3-kombu python3-aiohttp python3-multidict python3-yarl python3-mypy python3-black
python3-isort python3-jedi python3-parso python3-ipython python3-traitlets python3-jupyter-client
python3-nbformat python3-tables python3-xarray python3-seaborn python3-bokeh python3-plotly python3-invoke
python3-fabric python3-scrapy python3-marshmallow python3-pydantic python3-fastapi python3-starlette
python3-uvicorn python3-httpx python3-anyio python3-trio python3-gevent python3-eventlet python3-psutil
python3-netaddr python3-dnspython python3-rdflib python3-biopython python3-pyasn1 python3-nova python3-neutron
python3-keystone python3-swift python3-cinder python3-heat python3-glance python3-oslo.config python3-salt
python3-matplotlib python3-pyqtgraph python3-zope.interface python3-falcon python3-hamcrest python3-mock
python3-packaging python3-six python3-future python3-certifi python3-idna python3-chardet python3-charset-normalizer
python3-wheel python3-virtualenv python3-tox python3-coverage python3-pluggy python3-more-itertools
python3-sortedcontainers python3-cachetools python3-decorator python3-wrapt python3-pexpect python3-ptyprocess
python3-prompt-toolkit python3-rich python3-typer python3-regex python3-jsonschema python3-pyrsistent
python3-msgpack python3-protobuf python3-grpcio python3-websockets python3-websocket python3-paste
python3-webob python3-routes python3-cherrypy3 python3-bottle python3-sqlparse python3-pymysql python3-psycopg2
python3-redis python3-pymongo python3-elasticsearch python3-boto python3-s3transfer python3-oauthlib
python3-requests-oauthlib python3-jwt python3-itsdangerous python3-blinker python3-pycparser python3-cffi
python3-ply python3-lark python3-astroid python3-pyflakes python3-pycodestyle python3-flake8 python3-autopep8
python3-pep8-naming python3-hypothesis python3-freezegun python3-responses python3-nose2 python3-testtools
python3-fixtures python3-stestr python3-pbr python3-stevedore python3-cliff python3-cmd2 python3-tabulate
python3-prettytable python3-termcolor python3-colorama python3-tqdm python3-joblib python3-threadpoolctl
python3-numexpr python3-bottleneck python3-patsy python3-sympy python3-mpmath python3-gmpy2 python3-shapely
python3-pyproj python3-fiona python3-geopandas python3-rasterio python3-xlrd python3-xlsxwriter python3-reportlab
python3-pypdf2 python3-pdfminer python3-docx python3-openssl python3-nacl python3-bcrypt python3-passlib
python3-paramiko python3-ldap3 python3-kazoo python3-zmq python3-amqp python3-vine python3-billiard
python3-humanize python3-arrow python3-pendulum python3-dateparser python3-icalendar python3-vobject
python3-feedparser python3-jmespath python3-toml python3-tomli python3-tomlkit python3-jsonpointer
python3-jsonpatch python3-voluptuous python3-cerberus python3-schema python3-inflect python3-inflection
python3-unidecode python3-slugify python3-emoji python3-markupsafe python3-bleach python3-tinycss2
python3-cssselect python3-pyquery python3-w3lib python3-parsel python3-itemadapter python3-queuelib
python3-sqlalchemy-utils python3-peewee python3-pony python3-tortoise python3-aiofiles python3-aiosqlite
python3-asyncpg python3-uvloop python3-h11 python3-h2 python3-hpack python3-hyperframe python3-wsproto
python3-sniffio python3-outcome python3-async-timeout python3-frozenlist python3-aiosignal
python3-sentry-sdk python3-structlog python3-loguru python3-pyramid python3-waitress python3-gunicorn
python3-docker python3-kubernetes python3-google-auth python3-httplib2 python3-uritemplate python3-rsa
python3-ecdsa python3-pyotp python3-qrcode python3-segno python3-pywt python3-sounddevice python3-soundfile
python3-mido python3-music21 python3-pygame python3-pyglet python3-arcade python3-pymunk python3-networkx
python3-igraph python3-pydot python3-graphviz python3-pygraphviz python3-ete3 python3-pysam python3-pyvcf
python3-astroplan python3-sunpy python3-photutils python3-regions python3-healpy python3-emcee python3-corner
python3-lmfit python3-uncertainties python3-pint python3-quantities python3-sympy python3-cvxopt python3-pulp
python3-ortools python3-deap python3-pyswarms python3-nevergrad python3-optuna python3-hyperopt python3-gensim
python3-spacy python3-textblob python3-langdetect python3-jieba python3-pymorphy2 python3-stemmer
python3-whoosh python3-xapian python3-pysolr python3-elasticsearch-curator python3-apscheduler python3-schedule
python3-crontab python3-croniter python3-sh python3-plumbum python3-fabric python3-pyinotify python3-watchdog
python3-serial python3-usb python3-smbus python3-gpiozero python3-rpi.gpio python3-can python3-bluez
python3-scapy python3-dpkt python3-pyshark python3-impacket python3-netmiko python3-napalm python3-ncclient
python3-pysnmp4 python3-ryu python3-openstackclient python3-novaclient python3-neutronclient python3-keystoneclient
python3-glanceclient python3-cinderclient python3-heatclient python3-swiftclient python3-oslo.utils
python3-oslo.messaging python3-oslo.db python3-oslo.log python3-oslo.service python3-oslo.concurrency
python3-taskflow python3-tooz python3-castellan python3-barbican python3-designate python3-manila
python3-octavia python3-ironic python3-magnum python3-trove python3-zaqar python3-aodh python3-ceilometer
python3-gnocchi python3-mistral python3-senlin python3-watcher python3-zun python3-sahara python3-murano
""".split()

LICENSE_OK = re.compile(r"^(apache|expat|mit|bsd|psf|python|isc|zlib|hpnd|zpl|zope|public[- ]domain|cc0|unlicense|"
                        r"x11|boost|ncsa|wtfpl|0bsd|pil|matplotlib|historical|biopython|cnri)", re.I)

MAX_BYTES = 256_000
MAX_LINE = 1000
MAX_MEAN_LINE = 100
MIN_ALNUM = 0.25
SHINGLE = 5
PERMUTATIONS = 128
BANDS = 32  # 32 bands of 4 rows: a pair at Jaccard 0.7 shares a band with probability 1 - (1 - 0.7^4)^32 = 0.9996
NEAR_DUPLICATE = 0.7
SHARD_CHARS = 100_000_000


def package_key(package: str, installed: str) -> str:
    return f"debian/{package}/{installed[len(SITE):]}"


def is_held_out_key(key: str) -> bool:
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
    return int(digest[:16], 16) % 100 < HELD_OUT_PERCENT


def download(package: str, cache: pathlib.Path) -> Optional[pathlib.Path]:
    found = sorted(cache.glob(f"{package}_*.deb"))
    if found:
        return found[-1]
    run = subprocess.run(["apt-get", "download", package], cwd=cache, capture_output=True, text=True)
    found = sorted(cache.glob(f"{package}_*.deb"))
    return found[-1] if run.returncode == 0 and found else None


def deb_members(deb: pathlib.Path) -> tarfile.TarFile:
    data = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], check=True, capture_output=True).stdout
    return tarfile.open(fileobj=io.BytesIO(data))


def copyright_licenses(text: str) -> tuple[Optional[list[str]], str]:
    """The licenses of the Files paragraphs outside debian/*, or None and why."""
    if not text.startswith("Format:"):
        return None, "copyright file is not machine-readable (DEP-5)"
    licenses = []
    for paragraph in re.split(r"\n\s*\n", text):
        files = re.search(r"^Files:(.*(?:\n[ \t].*)*)", paragraph, re.M)
        license_ = re.search(r"^License:[ \t]*(.*)$", paragraph, re.M)
        if not files or not license_:
            continue
        globs = files.group(1).split()
        if all(g.startswith("debian/") for g in globs):
            continue
        licenses.append(license_.group(1).strip())
    if not licenses:
        return None, "no Files paragraph"
    return licenses, ""


def license_ok(expression: str) -> bool:
    """Every alternative of an 'or' expression and every part of an 'and' one must be permissive:
    the conservative reading (a dual license 'BSD or GPL' would be fine with one, but is kept strict)."""
    parts = [p for p in re.split(r"\s+(?:or|and)\s+|,|\s+with\s+", expression, flags=re.I) if p.strip()]
    return bool(parts) and all(LICENSE_OK.match(p.strip()) for p in parts)


def read_package(package: str, cache: pathlib.Path) -> dict:
    deb = download(package, cache)
    if deb is None:
        return {"package": package, "kept": False, "why": "not in the archive"}
    version = deb.name.split("_")[1].replace("%3a", ":")
    entry = {"package": package, "version": version, "deb": deb.name}
    with deb_members(deb) as tar:
        names = tar.getnames()
        copyright_name = next((n for n in names if re.fullmatch(r"\./usr/share/doc/[^/]+/copyright", n)), None)
        if copyright_name is None:
            return {**entry, "kept": False, "why": "no copyright file"}
        member = tar.getmember(copyright_name)
        if member.issym():  # a link to another package's doc folder
            return {**entry, "kept": False, "why": "copyright file is a link"}
        text = tar.extractfile(member).read().decode("utf-8", "replace")
        licenses, why = copyright_licenses(text)
        if licenses is None:
            return {**entry, "kept": False, "why": why}
        entry["licenses"] = sorted(set(licenses))
        bad = sorted({x for x in licenses if not license_ok(x)})
        if bad:
            return {**entry, "kept": False, "why": "not permissive: " + "; ".join(bad)}
        files = {}
        for name in names:
            path = name[2:] if name.startswith("./") else name
            if path.startswith(SITE) and path.endswith(".py"):
                m = tar.getmember(name)
                if m.isfile():
                    files[package_key(package, path)] = tar.extractfile(m).read()
    return {**entry, "kept": True, "files": files}


def quality_problem(text: str) -> Optional[str]:
    if len(text.encode("utf-8")) > MAX_BYTES:
        return "larger than 256 kB"
    lines = text.splitlines() or [""]
    if max(map(len, lines)) > MAX_LINE:
        return "a line longer than 1000"
    if sum(map(len, lines)) / len(lines) > MAX_MEAN_LINE:
        return "mean line longer than 100"
    if text and sum(c.isalnum() for c in text) / len(text) < MIN_ALNUM:
        return "under 25% alphanumeric"
    return None


_PRIME = (1 << 61) - 1
_rng = np.random.default_rng(20261203)
_A = _rng.integers(1, _PRIME, PERMUTATIONS, dtype=np.uint64)
_B = _rng.integers(0, _PRIME, PERMUTATIONS, dtype=np.uint64)


def minhash(text: str) -> np.ndarray:
    words = re.findall(r"\w+", text)
    shingles = {" ".join(words[i:i + SHINGLE]) for i in range(max(1, len(words) - SHINGLE + 1))}
    hashes = np.fromiter((int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8).digest(), "little") >> 4
                          for s in shingles), dtype=np.uint64, count=len(shingles))
    # (a * h + b) mod p with 61-bit values: split h to keep the product inside 64 bits is costly in numpy;
    # a universal family modulo 2^64 on odd multipliers is enough for similarity estimates.
    values = hashes[None, :] * (_A[:, None] | np.uint64(1)) + _B[:, None]
    return values.min(axis=1)


def deduplicate(items: list[tuple[str, str]]) -> tuple[list[str], dict[str, str]]:
    """Keys to keep (first of each duplicate group, in the given order) and, per dropped key, what it copied."""
    keep, dropped = [], {}
    seen_exact: dict[str, str] = {}
    buckets: dict[tuple[int, bytes], list[int]] = {}
    signatures: list[np.ndarray] = []
    kept_keys: list[str] = []
    rows = PERMUTATIONS // BANDS
    for key, text in items:
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        if digest in seen_exact:
            dropped[key] = seen_exact[digest]
            continue
        seen_exact[digest] = key
        sig = minhash(text)
        candidates = set()
        for band in range(BANDS):
            candidates.update(buckets.get((band, sig[band * rows:(band + 1) * rows].tobytes()), ()))
        match = next((c for c in sorted(candidates) if np.mean(signatures[c] == sig) >= NEAR_DUPLICATE), None)
        if match is not None:
            dropped[key] = kept_keys[match]
            continue
        index = len(kept_keys)
        kept_keys.append(key)
        signatures.append(sig)
        for band in range(BANDS):
            buckets.setdefault((band, sig[band * rows:(band + 1) * rows].tobytes()), []).append(index)
        keep.append(key)
    return keep, dropped


def write_corpus(entries: list[dict], folder: pathlib.Path) -> list[pathlib.Path]:
    """Write the corpus in shards of about SHARD_CHARS characters: the standard library first, then the
    package files in the order of sha256(key), so each shard samples the packages uniformly."""
    stdlib = [e for e in entries if e["key"].startswith("python3.11/")]
    packages = sorted((e for e in entries if not e["key"].startswith("python3.11/")),
                      key=lambda e: hashlib.sha256(e["key"].encode("utf-8")).hexdigest())
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("corpus-*.jsonl.xz"):
        old.unlink()
    shards, out, size = [], None, 0
    for entry in stdlib + packages:
        if out is None or size >= SHARD_CHARS:
            if out is not None:
                out.close()
            shards.append(folder / f"corpus-{len(shards):02d}.jsonl.xz")
            out, size = lzma.open(shards[-1], "wt", encoding="utf-8", preset=9), 0
        out.write(json.dumps({"key": entry["key"], "split": entry["split"], "text": entry["text"]}) + "\n")
        size += len(entry["text"])
    if out is not None:
        out.close()
    return shards


def stdlib_items() -> Iterable[tuple[str, str, str]]:
    """(key, split, text) of the standard library's .py files; held-out files first so they win ties."""
    from corpus import is_held_out
    files = [p for p in corpus_files("all") if p.suffix == ".py"]
    files.sort(key=lambda p: (not is_held_out(p), file_key(p)))
    for p in files:
        text = read_text(p)
        if text is not None:
            yield file_key(p), "held_out" if is_held_out(p) else "train", text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=pathlib.Path, default=ROOT / ".train" / "debs")
    parser.add_argument("--manifest", type=pathlib.Path, default=ROOT / ".train" / "packages.json")
    parser.add_argument("--corpus", type=pathlib.Path, default=ROOT / ".train" / "corpus",
                        help="folder of the corpus shards: every kept file, one JSON object {key, split, text} a "
                             "line, xz-compressed")
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)

    packages, texts = [], {}
    for name in dict.fromkeys(PACKAGES):
        entry = read_package(name, args.cache)
        files = entry.pop("files", {})
        entry["files_read"] = len(files)
        drops: dict[str, int] = {}
        for key, data in files.items():
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                drops["not UTF-8"] = drops.get("not UTF-8", 0) + 1
                continue
            problem = quality_problem(text)
            if problem:
                drops[problem] = drops.get(problem, 0) + 1
                continue
            texts[key] = text
        if drops:
            entry["files_filtered"] = drops
        packages.append(entry)
        print(f"{name}: {'kept' if entry['kept'] else 'rejected (' + entry['why'] + ')'}"
              f"{', %d files' % entry['files_read'] if entry['kept'] else ''}", flush=True)

    # Deduplicate: standard-library held-out files first, then its training files, then packages by key.
    stdlib = list(stdlib_items())
    stdlib_split = {k: split for k, split, _ in stdlib}
    order = [(k, t) for k, _, t in stdlib] + sorted(texts.items())
    keep, dropped = deduplicate(order)
    keep_set = set(keep)
    stdlib_keys = set(stdlib_split)
    per_package: dict[str, dict] = {}
    files_out = []
    for key in sorted(texts):
        package = key.split("/")[1]
        stats = per_package.setdefault(package, {"files_kept": 0, "chars_kept": 0, "duplicates": 0,
                                                 "copies_of_stdlib": 0})
        if key not in keep_set:
            stats["duplicates"] += 1
            if dropped[key] in stdlib_keys:
                stats["copies_of_stdlib"] += 1
            continue
        split = "held_out" if is_held_out_key(key) else "train"
        stats["files_kept"] += 1
        stats["chars_kept"] += len(texts[key])
        files_out.append({"key": key, "split": split,
                          "sha256": hashlib.sha256(texts[key].encode("utf-8")).hexdigest()})
    for entry in packages:
        entry.update(per_package.get(entry["package"], {}))
    # Held-out files are all kept, the split every bundled model is compared on; training files that copy them go.
    stdlib_dropped = sorted(k for k in stdlib_keys if k not in keep_set and stdlib_split[k] == "train")

    entries = [{"key": key, "split": stdlib_split[key], "text": text} for key, text in order
               if key in stdlib_keys and (key in keep_set or stdlib_split[key] == "held_out")]
    entries += [{"key": f["key"], "split": f["split"], "text": texts[f["key"]]} for f in files_out]
    shards = write_corpus(entries, args.corpus)
    manifest = {
        "source": "Debian 12 (bookworm) python3-* packages, read by tools/data/packages.py",
        "rules": {"license": LICENSE_OK.pattern, "max_bytes": MAX_BYTES, "max_line": MAX_LINE,
                  "max_mean_line": MAX_MEAN_LINE, "min_alnum": MIN_ALNUM,
                  "near_duplicate": {"shingle_words": SHINGLE, "permutations": PERMUTATIONS, "bands": BANDS,
                                     "jaccard": NEAR_DUPLICATE},
                  "held_out_percent": HELD_OUT_PERCENT},
        "stdlib_files_dropped_as_duplicates": stdlib_dropped,
        "packages": packages,
        "files": files_out,
    }
    args.manifest.write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    kept = [p for p in packages if p["kept"]]
    chars = sum(p.get("chars_kept", 0) for p in kept)
    print(f"{len(kept)} of {len(packages)} packages kept; {len(files_out)} files, {chars / 1e6:.1f} M characters "
          f"({sum(f['split'] == 'held_out' for f in files_out)} files held out); {len(stdlib_dropped)} standard-library "
          f"files dropped as duplicates; manifest {args.manifest}; corpus {args.corpus}: {len(shards)} shards, "
          f"{sum(p.stat().st_size for p in shards) / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
