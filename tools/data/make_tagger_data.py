#!/usr/bin/env python3
"""Data of sc2's two classifiers on the bundled model's backbone (models/sc2-tiny).

  * the secrets tagger (token classification): source files with synthetic
    secrets inserted (emails, IPv4/IPv6 addresses, API-key-like tokens,
    passwords in assignments, URLs, command lines and config lines), each token
    labelled O, EMAIL, IP_ADDRESS, KEY or PASSWORD;
  * language identification (sequence classification): python, c, shell, other.

Sources, all on a Debian machine with pyenv's CPython builds in /root/.pyenv:
  python  CPython's standard library: /usr/lib/python3.11/**/*.py, and the
          files of pyenv's CPython 3.12 lib/python3.12 that 3.11 lacks (its
          tests): Python Software Foundation License 2.0.
  c       CPython's C headers: /usr/include/python3.11 and pyenv's CPython
          include/python3.x folders (newest version of each path), and the few
          .c files CPython installs: PSF License.
  shell   pyenv and its plugins (bash scripts, bats tests, completions, hooks,
          a sample of python-build's definitions): MIT License; and CPython's
          shell scripts (venv's activate, makesetup): PSF License.
  other   CPython 3.12's data and documentation files (txt, toml, xml, json,
          html, cfg, rst, css, PowerShell/fish/csh/batch scripts, Makefile):
          PSF License; pyenv's Markdown documents and man page: MIT License.
  and, for language identification only, more C: the example programs of
  Debian's zlib1g-dev (Zlib), liblzma-dev (public domain), libexpat1-dev
  (MIT), libpng-dev (libpng) and libxmlsec1-dev (MIT) packages.

Each file has a key, "<corpus>/<path inside its root>" (the same for every
CPython version, so versions of a file land in the same split), and is HELD
OUT iff int(sha256(key)[:16], 16) % 100 < 15. For the standard library the
keys are tools/data/corpus.py's ("python3.11/..."), whose 5 % held-out files (never
seen by the bundled model) are a subset of these.

Labels of the tagger: synthetic secrets carry their kind; emails and IP
addresses already in the files are found by strict patterns and labelled too
(so the data never calls a real address O). A token is labelled with the kind
of the secret its bytes overlap.

Label delay: the model is causal, so a token sees only what precedes it. The
tagger reads the label of token i at position i + DELAY (DELAY tokens of
right context: the "@" of an email, the rest of a key); the input is the
file's tokens followed by DELAY <|endoftext|> tokens. config.json records it
as "label_delay".

Writes (a git-ignored folder, default .tagdata/):
  tagger.npz   train_ids (N, 512) int16, train_targets (N, 512) int8 (delayed
               labels, -1 = none); held-out chunks as flat arrays:
               eval_ids int16, eval_lengths int32 (positions per chunk),
               eval_gold uint8 (labels of the scored tokens: length - DELAY per
               chunk), eval_lang uint8
  langid.npz   train_ids int16 flat, train_offsets int64, train_labels uint8;
               eval_ids, eval_offsets, eval_labels (the first 256 tokens of
               held-out files)
  summary.json file and example counts
Needs numpy and tokenizers.
"""

from __future__ import annotations

import argparse
import hashlib
import ipaddress
import json
import pathlib
import random
import re
import string
from dataclasses import dataclass

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
TOKENIZER = ROOT / "models" / "sc2-tiny" / "tokenizer.json"
PYENV = pathlib.Path("/root/.pyenv")
STDLIB = pathlib.Path("/usr/lib/python3.11")
PY312 = PYENV / "versions" / "3.12.1" / "lib" / "python3.12"
HELD_OUT_PERCENT = 15

LABELS = ["O", "EMAIL", "IP_ADDRESS", "KEY", "PASSWORD"]
PLACEHOLDERS = {"EMAIL": "<EMAIL>", "IP_ADDRESS": "<IP_ADDRESS>", "KEY": "<KEY>", "PASSWORD": "<PASSWORD>"}
LANGS = ["python", "c", "shell", "other"]
DELAY = 8
CHUNK = 512          # tagger positions per training and evaluation chunk
LANGID_TOKENS = 256  # language ID reads at most this many tokens
EOS = 0
IGNORE = -1


# ----------------------------------------------------------------------------- sources

@dataclass(frozen=True)
class Source:
    key: str
    path: pathlib.Path
    lang: str
    license: str


def held_out(key: str) -> bool:
    return int(hashlib.sha256(key.encode()).hexdigest()[:16], 16) % 100 < HELD_OUT_PERCENT


def _lib_files(root: pathlib.Path, pattern: str):
    for p in sorted(root.rglob(pattern)):
        rel = p.relative_to(root)
        if any(part.endswith("-packages") or part == "__pycache__" for part in rel.parts):
            continue
        if p.is_file() and not p.is_symlink():
            yield rel, p


def python_sources() -> list[Source]:
    out, seen = [], set()
    for root in (STDLIB, PY312):
        for rel, p in _lib_files(root, "*.py"):
            key = "python3.11/" + rel.as_posix()
            if key not in seen:
                seen.add(key)
                out.append(Source(key, p, "python", "PSF-2.0"))
    return out


def _pyenv_versions() -> list[pathlib.Path]:
    def version(p):
        return tuple(int(x) for x in p.name.split(".") if x.isdigit())
    return sorted((p for p in (PYENV / "versions").glob("*") if p.is_dir()), key=version, reverse=True)


def c_sources() -> list[Source]:
    roots = []
    for v in _pyenv_versions():
        roots += sorted((v / "include").glob("python*"))
        if v.name.startswith("3.11"):
            roots.append(pathlib.Path("/usr/include/python3.11"))
    out, seen = [], set()
    for root in roots:
        for rel, p in _lib_files(root, "*.h"):
            key = "python-include/" + rel.as_posix()
            if key not in seen:
                seen.add(key)
                out.append(Source(key, p, "c", "PSF-2.0"))
    for v in _pyenv_versions():
        for lib in sorted((v / "lib").glob("python*")):
            for rel, p in _lib_files(lib, "*.c"):
                key = "python3.11/" + rel.as_posix()
                if key not in seen:
                    seen.add(key)
                    out.append(Source(key, p, "c", "PSF-2.0"))
    return out


# More C for language identification only (the tagger's data is the CPython sources above): the example
# programs of Debian's -dev packages under permissive licenses.
EXAMPLE_C = {
    "zlib1g-dev": "Zlib", "liblzma-dev": "public domain", "libexpat1-dev": "MIT", "libpng-dev": "libpng",
    "libxmlsec1-dev": "MIT",
}


def example_c_sources() -> list[Source]:
    out = []
    for package, license in EXAMPLE_C.items():
        root = pathlib.Path("/usr/share/doc") / package / "examples"
        for p in sorted(root.glob("*.[ch]")) if root.is_dir() else []:
            out.append(Source(f"debian-doc/{package}/{p.name}", p, "c", license))
    return out


def _shebang_shell(p: pathlib.Path) -> bool:
    try:
        head = p.read_bytes()[:64].split(b"\n", 1)[0]
    except OSError:
        return False
    return head.startswith(b"#!") and re.search(rb"\b(ba|z|da|k)?sh\b", head) is not None


def shell_sources() -> list[Source]:
    out = []
    skip = {".git", "versions", "shims", ".github"}
    for p in sorted(PYENV.rglob("*")):
        rel = p.relative_to(PYENV)
        if any(part in skip for part in rel.parts) or not p.is_file() or p.is_symlink():
            continue
        key = "pyenv/" + rel.as_posix()
        if "python-build/share/python-build" in key:
            # Hundreds of near-identical build definitions: one in eight.
            if int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % 8 == 0:
                out.append(Source(key, p, "shell", "MIT"))
            continue
        if p.suffix in (".bash", ".sh", ".bats", ".zsh") or (p.suffix == "" and _shebang_shell(p)):
            out.append(Source(key, p, "shell", "MIT"))
    for rel, p in _lib_files(PY312, "*"):
        if rel.name in ("activate", "makesetup", "fetch_macholib") and _shebang_shell(p) or rel.name == "activate":
            out.append(Source("python3.11/" + rel.as_posix(), p, "shell", "PSF-2.0"))
    return out


OTHER_SUFFIXES = {".txt", ".toml", ".xml", ".json", ".html", ".cfg", ".rst", ".css", ".ps1", ".fish", ".csh",
                  ".bat", ".ini", ".in", ".xsl", ".dtd", ".svg"}


def other_sources() -> list[Source]:
    out = []
    for rel, p in _lib_files(PY312, "*"):
        if p.suffix in OTHER_SUFFIXES or rel.name == "Makefile":
            out.append(Source("python3.11/" + rel.as_posix(), p, "other", "PSF-2.0"))
    for p in sorted(PYENV.rglob("*.md")) + [PYENV / "man" / "man1" / "pyenv.1"]:
        rel = p.relative_to(PYENV)
        if any(part in (".git", "versions", ".github") for part in rel.parts) or not p.is_file():
            continue
        out.append(Source("pyenv/" + rel.as_posix(), p, "other", "MIT"))
    return out


def read(p: pathlib.Path, limit: int) -> str | None:
    try:
        data = p.read_bytes()
    except OSError:
        return None
    if b"\0" in data:
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if len(text.strip()) < 64:
        return None
    if len(text) > limit:  # the start of long files: more files rather than long ones
        cut = text.rfind("\n", 0, limit)
        text = text[:cut + 1 if cut > 0 else limit]
    return text


def all_sources() -> dict[str, list[Source]]:
    groups = {"python": python_sources(), "c": c_sources(), "shell": shell_sources(), "other": other_sources()}
    seen_content = set()
    for lang, sources in groups.items():
        kept = []
        for s in sources:
            digest = hashlib.sha256(s.path.read_bytes()).hexdigest()
            if digest not in seen_content:
                seen_content.add(digest)
                kept.append(s)
        groups[lang] = kept
    return groups


# ----------------------------------------------------------------------------- secrets

FIRST = ["james", "mary", "wei", "fatima", "olga", "carlos", "aisha", "kenji", "lena", "ravi", "sofia", "tom",
         "nadia", "pierre", "yuki", "ahmed", "ingrid", "diego", "chloe", "marek", "priya", "omar", "hana", "lucas",
         "emma", "noah", "zoe", "ivan", "sara", "li", "anna", "john", "maria", "alex", "sam", "kim", "jo", "ben"]
LAST = ["smith", "garcia", "chen", "okafor", "novak", "tanaka", "muller", "rossi", "kowalski", "patel", "silva",
        "nguyen", "johnson", "brown", "martin", "dubois", "lee", "kim", "ivanova", "haddad", "larsen", "moreau",
        "schmidt", "jones", "wang", "lopez", "white", "khan", "berg", "costa", "fischer", "young", "scott"]
DOMAINS = ["example.com", "example.org", "acme.io", "mail.corp.net", "gmail.com", "outlook.com", "uni-bonn.de",
           "cs.stanford.edu", "company.co.uk", "startup.ai", "python.org", "dev.internal.example", "yahoo.fr",
           "proton.me", "research.lab.org", "web.de", "fastmail.com", "agency.gov", "shop.example.net", "ibm.com"]
USERS = ["admin", "root", "deploy", "postgres", "ubuntu", "svc_backup", "jenkins", "app", "dbuser", "git", "ops"]
HOSTS = ["db.example.com", "localhost", "api.internal", "cache-01.corp.net", "prod-db", "mysql.acme.io", "redis"]
WORDS = ["summer", "dragon", "monkey", "sunshine", "letmein", "shadow", "master", "football", "secret", "purple",
         "coffee", "winter", "tiger", "rocket", "banana", "galaxy", "falcon", "pepper", "silver", "orange"]
SAFE_SYMBOLS = "!#$%&*+-.=?^_~@"
SYLLABLES = ["ka", "lo", "mi", "ter", "ra", "no", "vex", "zen", "dor", "pix", "qua", "sil", "bri", "tan", "mo", "lu",
             "cor", "fin", "gra", "hel", "net", "byte", "data", "cloud", "shop", "soft", "lab", "hub", "ops", "bank"]
TLD_CHOICES = ["com", "org", "net", "io", "de", "co.uk", "dev", "ai", "fr", "nl", "edu", "app", "cloud", "example",
               "jp", "ch", "se", "info", "biz", "com.au"]
NAMES = ["value", "addr", "target", "data", "item", "entry", "default", "cfg", "arg", "result", "remote", "primary",
         "fallback", "node", "src", "dst", "peer", "contact", "owner", "recipient", "sample", "expected", "x", "s",
         "upstream", "origin", "seed", "first", "other", "local", "ref", "field", "text", "line", "spec"]
PATHS = ["api/v1", "reports", "pub", "repo.git", "backup", "status", "team/app.git", "db", "", "files/export.csv"]


def rand_chars(r: random.Random, alphabet: str, n: int) -> str:
    return "".join(r.choice(alphabet) for _ in range(n))


def make_domain(r: random.Random) -> str:
    name = "".join(r.choice(SYLLABLES) for _ in range(r.randint(1, 3)))
    if r.random() < 0.35:
        name = r.choice(["mail", "smtp", "dev", "corp", "eu", "us-east-1", "backup", "git", "db", "www"]) + "." + name
    return name + "." + r.choice(TLD_CHOICES)


def make_user(r: random.Random) -> str:
    return r.choice([r.choice(USERS), r.choice(FIRST), r.choice(FIRST) + "." + r.choice(LAST),
                     r.choice(FIRST)[0] + r.choice(LAST), "deploy", "ci-bot"])


def make_email(r: random.Random) -> str:
    f, l = r.choice(FIRST), r.choice(LAST)
    d = r.choice(DOMAINS) if r.random() < 0.5 else make_domain(r)
    local = r.choice([f"{f}.{l}", f"{f[0]}{l}", f"{f}_{l}{r.randint(1, 99)}", f"{f}", f"{l}.{f}", f"{f}+dev",
                      f"{f}{r.randint(1970, 2010)}", f"{f}-{l}", "info", "support", "noreply", "security"])
    if r.random() < 0.15:
        local = local.capitalize()
    return f"{local}@{d}"


def make_ipv4(r: random.Random) -> str:
    kind = r.random()
    if kind < 0.25:
        return f"192.168.{r.randint(0, 255)}.{r.randint(1, 254)}"
    if kind < 0.45:
        return f"10.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(1, 254)}"
    if kind < 0.55:
        return f"172.{r.randint(16, 31)}.{r.randint(0, 255)}.{r.randint(1, 254)}"
    return ".".join(str(r.randint(1, 254)) for _ in range(4))


def make_ipv6(r: random.Random) -> str:
    groups = [f"{r.randint(0, 0xFFFF):x}" for _ in range(8)]
    if r.random() < 0.3:
        groups[0] = r.choice(["2001", "fe80", "2a00", "2607", "fd00"])
    kind = r.random()
    if kind < 0.3:
        text = ":".join(groups)
    elif kind < 0.6:
        text = ":".join(g.zfill(4) for g in groups)
    else:
        keep_head, keep_tail = r.randint(1, 4), r.randint(1, 3)
        text = ":".join(groups[:keep_head]) + "::" + ":".join(groups[8 - keep_tail:])
    if r.random() < 0.15:
        text = text.upper()
    ipaddress.IPv6Address(text)
    return text


def make_ip(r: random.Random) -> str:
    return make_ipv6(r) if r.random() < 0.3 else make_ipv4(r)


ALNUM = string.ascii_letters + string.digits
B64 = ALNUM + "+/"


def make_key(r: random.Random) -> str:
    kind = r.randrange(11)
    if kind == 0:
        return "AKIA" + rand_chars(r, string.ascii_uppercase + string.digits, 16)
    if kind == 1:
        return r.choice(["ghp_", "gho_", "ghs_"]) + rand_chars(r, ALNUM, 36)
    if kind == 2:
        return "sk-" + rand_chars(r, ALNUM, r.choice([32, 48]))
    if kind == 3:
        return r.choice(["sk_live_", "pk_live_", "rk_test_"]) + rand_chars(r, ALNUM, 24)
    if kind == 4:
        return "xox" + r.choice("bpa") + "-" + "-".join(rand_chars(r, string.digits, 11) for _ in range(2)) + "-" + \
            rand_chars(r, ALNUM, 24)
    if kind == 5:
        return "AIza" + rand_chars(r, ALNUM + "_-", 35)
    if kind == 6:
        return rand_chars(r, "0123456789abcdef", r.choice([32, 40, 64]))
    if kind == 7:
        return rand_chars(r, B64, 40)
    if kind == 8:
        return "glpat-" + rand_chars(r, ALNUM + "_-", 20)
    if kind == 9:
        return "eyJ" + rand_chars(r, ALNUM + "_-", 30) + ".eyJ" + rand_chars(r, ALNUM + "_-", 40) + "." + \
            rand_chars(r, ALNUM + "_-", 43)
    return rand_chars(r, string.ascii_uppercase + string.digits, 8) + "-" + \
        "-".join(rand_chars(r, string.ascii_uppercase + string.digits, 4) for _ in range(3))


def make_password(r: random.Random) -> str:
    kind = r.randrange(5)
    if kind == 0:
        return r.choice(WORDS).capitalize() + str(r.randint(1, 2024)) + r.choice("!#$%&*?")
    if kind == 1:
        return rand_chars(r, ALNUM + SAFE_SYMBOLS, r.randint(8, 20))
    if kind == 2:
        w = r.choice(WORDS)
        return w.replace("a", "@").replace("o", "0").replace("e", "3").replace("s", "$") + str(r.randint(0, 99))
    if kind == 3:
        return r.choice(WORDS) + r.choice(WORDS) + str(r.randint(0, 9999))
    return rand_chars(r, ALNUM, r.randint(10, 16))


GENERATORS = {"EMAIL": make_email, "IP": make_ip, "IP4": make_ipv4, "IP6": make_ipv6, "KEY": make_key,
              "PASSWORD": make_password}
SLOT_LABEL = {"EMAIL": "EMAIL", "IP": "IP_ADDRESS", "IP4": "IP_ADDRESS", "IP6": "IP_ADDRESS", "KEY": "KEY",
              "PASSWORD": "PASSWORD"}

# Line templates per language. {EMAIL} {IP} {IP4} {IP6} {KEY} {PASSWORD} are secrets; {user} {host} {name}
# {path} {port} {var} {VAR} {VERSION} {HEXCOLOR} are plain text. Templates without a secret slot are negatives (all O).
TEMPLATES = {
    "python": [
        'password = "{PASSWORD}"', "PASSWORD = '{PASSWORD}'", 'db_password = "{PASSWORD}"  # TODO: read from env',
        'self.password = "{PASSWORD}"', 'login(user="{user}", password="{PASSWORD}")',
        'conn = psycopg2.connect(host="{IP}", user="{user}", password="{PASSWORD}")',
        'DATABASE_URL = "postgresql://{user}:{PASSWORD}@{host}:5432/app"',
        'BROKER_URL = "amqp://{user}:{PASSWORD}@{IP4}:5672//"', '"password": "{PASSWORD}",',
        'API_KEY = "{KEY}"', "api_key = '{KEY}'", 'AWS_SECRET_ACCESS_KEY = "{KEY}"', 'token = "{KEY}"',
        'headers = {{"Authorization": "Bearer {KEY}"}}', 'client = Client(api_key="{KEY}")',
        'SECRET_KEY = "{KEY}"', 'os.environ["GITHUB_TOKEN"] = "{KEY}"', '"api_key": "{KEY}",',
        "# Contact: {name} <{EMAIL}>", '__email__ = "{EMAIL}"', 'AUTHOR_EMAIL = "{EMAIL}"',
        'send_mail(subject, body, "{EMAIL}", ["{EMAIL}"])', "# Report bugs to {EMAIL}",
        'ADMINS = [("{name}", "{EMAIL}")]', 'msg["To"] = "{EMAIL}"', "# Maintainer: {EMAIL}",
        'HOST = "{IP}"', 'server = ("{IP4}", {port})', 'url = "http://{IP4}:{port}/api/v1"',
        'ALLOWED_HOSTS = ["{IP4}", "{IP4}"]', "# the staging box is {IP}", 'sock.connect(("{IP}", {port}))',
        'DNS_SERVERS = ["{IP4}", "{IP6}"]', 'addr = ipaddress.ip_address("{IP6}")', 'proxy = "http://{IP4}:3128"',
        'requests.get("https://{user}:{PASSWORD}@{host}/status")', 'return "https://{user}:{PASSWORD}@{host}/{path}"',
        'REDIS_URL = "redis://:{PASSWORD}@{host}:6379/0"', 'MONGO_URI = "mongodb://{user}:{PASSWORD}@{host}:27017/admin"',
        'url = f"ftp://{user}:{PASSWORD}@{host}/{path}"', 'engine = create_engine("mysql+pymysql://{user}:{PASSWORD}@{IP4}/shop")',
        'MIRROR = "https://{user}:{PASSWORD}@{host}/{path}"', "# e.g. smtp://{user}:{PASSWORD}@{host}:587",
        # negatives
        'password = os.environ["DB_PASSWORD"]', "password = getpass.getpass()", "password = None",
        'password = ""', 'key = "name"', 'VERSION = "3.11.4"', 'host = "localhost"',
        'token = request.headers.get("X-Token")', "email = user.email", "api_key = settings.API_KEY",
        "digest = hashlib.sha256(data).hexdigest()", "# see the docs for the password policy",
        'PORT = {port}', 'timeout = 30', 'encoding = "utf-8"', 'return "https://{host}/{path}"',
        'URL = "https://{host}/login?user={user}"', 'webbrowser.open("https://{host}/{path}")',
        '{var} = "{VERSION}"', '{var} = ["{VERSION}", "{VERSION}"]', '{var} = "{HEXCOLOR}"', "# since {VERSION}",
        # neutral contexts: the form alone tells
        '{var} = "{IP}"', '{var} = "{EMAIL}"', '{var} = ["{IP4}", "{IP6}"]', '{var}("{IP}", {port})',
        'assert parse("{IP4}") is not None', '{var} = "{KEY}"', '{var} = {{"{var}": "{KEY}"}}', "# {IP}",
        'print("{EMAIL}")', '{var}.append("{EMAIL}")', "self.{var} = '{IP4}'", 'yield "{IP6}"',
    ],
    "c": [
        '#define API_KEY "{KEY}"', 'static const char *api_token = "{KEY}";', 'char secret[] = "{KEY}";',
        'static const char *password = "{PASSWORD}";', '#define DB_PASSWORD "{PASSWORD}"',
        'set_credentials(ctx, "{user}", "{PASSWORD}");', 'const char *url = "https://{user}:{PASSWORD}@{host}/";',
        'const char *mirror = "ftp://{user}:{PASSWORD}@{host}/{path}";', 'static const char *base = "https://{host}/{path}";',
        "/* Maintainer: {name} <{EMAIL}> */", "// Contact {EMAIL} for access", '#define SUPPORT_EMAIL "{EMAIL}"',
        '#define SERVER_ADDR "{IP}"', "// default gateway {IP4}", 'inet_pton(AF_INET, "{IP4}", &addr);',
        'inet_pton(AF_INET6, "{IP6}", &addr6);', 'static const char *peers[] = {{"{IP4}", "{IP4}", NULL}};',
        'connect_to("{IP}", {port});', "/* fallback resolver: {IP} */",
        # negatives
        'static const char *{var} = "{IP}";', '{var}("{EMAIL}");', 'const char *{var}[] = {{"{IP4}", "{IP6}"}};',
        '#define {VAR} "{KEY}"', '{var} = "{KEY}";', 'static const char *{var} = "{VERSION}";',
        '#define PY_VERSION "3.12.1"', 'password = getenv("DB_PASSWORD");', "static const char *key = NULL;",
        '#define MAX_KEY_LEN 64', "/* see README for the password rules */", 'const char *host = "localhost";',
    ],
    "shell": [
        "export AWS_ACCESS_KEY_ID={KEY}", 'export AWS_SECRET_ACCESS_KEY="{KEY}"', "GITHUB_TOKEN={KEY}",
        'export API_TOKEN="{KEY}"', 'curl -H "Authorization: token {KEY}" https://{host}/repos',
        "PASSWORD='{PASSWORD}'", 'export DB_PASSWORD="{PASSWORD}"', "mysql -u {user} -p'{PASSWORD}' -h {IP4}",
        "curl -u {user}:{PASSWORD} https://{host}/api", "DB_URL=postgres://{user}:{PASSWORD}@{IP4}:5432/app",
        "git clone https://{user}:{PASSWORD}@{host}/{path}", "wget ftp://{user}:{PASSWORD}@{host}/{path}",
        'export DATABASE_URL="mysql://{user}:{PASSWORD}@{host}:3306/db"', "curl -fsSL https://{host}/{path}",
        'sshpass -p "{PASSWORD}" ssh {user}@{host}', "ssh {user}@{IP}", "scp build.tar.gz {user}@{IP4}:/tmp/",
        "ping -c 1 {IP}", 'echo "nameserver {IP4}" >> /etc/resolv.conf', "# Maintainer: {name} <{EMAIL}>",
        'git config user.email "{EMAIL}"', 'MAILTO="{EMAIL}"', "# questions: {EMAIL}",
        'ip -6 addr add {IP6}/64 dev eth0',
        # negatives
        "{VAR}={IP}", '{VAR}="{EMAIL}"', "echo {IP}", "{VAR}={KEY}", "nc -z {IP4} {port}", '{VAR}="{IP6}"',
        "{VAR}={VERSION}", 'echo "{VERSION}"',
        'PASSWORD="$1"', "read -rs PASSWORD", 'export TOKEN="${{TOKEN:-}}"', "VERSION=1.2.3",
        'HOST="${{HOST:-localhost}}"', 'echo "usage: $0 <user> <password>"',
    ],
    "other": [
        "password: {PASSWORD}", "password = {PASSWORD}", '"api_key": "{KEY}",', "api_key = {KEY}",
        "token: {KEY}", "email = {EMAIL}", "Contact: {EMAIL}", "host = {IP}", "bind_address: {IP}",
        "url = https://{user}:{PASSWORD}@{host}/", "author = {name} <{EMAIL}>", "server {IP4}:{port};",
        'database_url = "postgresql://{user}:{PASSWORD}@{host}/app"', "proxy: http://{user}:{PASSWORD}@{IP4}:3128",
        "homepage = https://{host}/{path}",
        # negatives
        "{var}: {IP}", "{var} = {EMAIL}", "- {IP}", '{var}: "{KEY}"', "- {EMAIL}",
        "version: {VERSION}", "{var}: {VERSION}", "color = {HEXCOLOR}",
        "password: ${{DB_PASSWORD}}", "host = localhost", "version = 1.2.3", "timeout = 30",
    ],
}
COMMENT = {"python": "#", "c": "//", "shell": "#", "other": "#"}


def fill(template: str, r: random.Random) -> tuple[str, list[tuple[int, int, str]]]:
    """The template's text and its secret spans (character offsets)."""
    out, spans, pos = [], [], 0
    for m in re.finditer(r"\{\{|\}\}|\{(\w+)\}", template):
        out.append(template[pos:m.start()])
        pos = m.end()
        tok = m.group(0)
        if tok in ("{{", "}}"):
            out.append(tok[0])
            continue
        slot = m.group(1)
        if slot in GENERATORS:
            value = GENERATORS[slot](r)
            while "://" in template and slot == "PASSWORD" and any(c in value for c in "@:/#?"):
                value = GENERATORS[slot](r)  # credentials in a URL: no reserved characters
            start = sum(map(len, out))
            spans.append((start, start + len(value), SLOT_LABEL[slot]))
            out.append(value)
        elif slot == "user":
            out.append(make_user(r))
        elif slot == "host":
            out.append(r.choice(HOSTS) if r.random() < 0.3 else make_domain(r))
        elif slot == "path":
            out.append(r.choice(PATHS))
        elif slot in ("var", "VAR"):
            name = r.choice(NAMES) if r.random() < 0.6 else f"{r.choice(NAMES)}_{r.choice(NAMES)}"
            out.append(name.upper() if slot == "VAR" else name)
        elif slot == "VERSION":
            out.append(r.choice([f"{r.randint(0, 9)}.{r.randint(0, 30)}.{r.randint(0, 20)}",
                                 f"{r.randint(0, 4)}.{r.randint(0, 12)}", f"20{r.randint(10, 25)}.{r.randint(1, 12)}.{r.randint(1, 28)}",
                                 f"20{r.randint(10, 25)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}",
                                 f"{r.randint(0, 23):02d}:{r.randint(0, 59):02d}:{r.randint(0, 59):02d}"]))
        elif slot == "HEXCOLOR":
            out.append("#" + rand_chars(r, "0123456789abcdef", r.choice([3, 6])))
        elif slot == "name":
            out.append(f"{r.choice(FIRST).capitalize()} {r.choice(LAST).capitalize()}")
        elif slot == "port":
            out.append(str(r.choice([22, 80, 443, 5432, 6379, 8000, 8080, 8443, 9000])))
        else:
            raise ValueError(slot)
    out.append(template[pos:])
    return "".join(out), spans


# Real addresses already in the files (strict: a common top-level domain, valid addresses).
TLDS = ("com|org|net|edu|gov|io|de|uk|fr|jp|nl|se|ch|it|es|ca|au|ru|cz|pl|be|at|dk|fi|no|us|info|me|ai|dev|"
        "cn|br|in|kr|tw|il|nz|ie|pt|hu|gr|mil|int|biz|name|eu|example|invalid|test")
EMAIL_RE = re.compile(r"(?<![\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@(?:[A-Za-z0-9-]+\.)+(?:" + TLDS + r")(?![\w-])")
IPV4_RE = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w.]|\.\d)")
IPV6_RE = re.compile(r"(?<![\w:.])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?![\w:])")


def existing_spans(text: str) -> list[tuple[int, int, str]]:
    spans = [(m.start(), m.end(), "EMAIL") for m in EMAIL_RE.finditer(text)]
    for m in IPV4_RE.finditer(text):
        if all(int(x) <= 255 and (x == "0" or not x.startswith("0")) for x in m.group(0).split(".")):
            spans.append((m.start(), m.end(), "IP_ADDRESS"))
    for m in IPV6_RE.finditer(text):
        s = m.group(0)
        groups = [g for g in s.split(":") if g]
        if len(groups) >= 4 and sum(len(g) >= 3 for g in groups) >= 2:
            try:
                ipaddress.IPv6Address(s)
            except ValueError:
                continue
            spans.append((m.start(), m.end(), "IP_ADDRESS"))
    spans.sort()
    merged = []
    for s in spans:
        if merged and s[0] < merged[-1][1]:
            continue
        merged.append(s)
    return merged


def insert_secrets(text: str, lang: str, r: random.Random, rate: float) -> tuple[str, list[tuple[int, int, str]]]:
    """Inserts template lines between lines of `text`; spans of inserted and existing secrets (characters)."""
    lines = text.splitlines(keepends=True)
    templates = TEMPLATES[lang]
    out, spans, pos = [], [], 0
    for i, line in enumerate(lines):
        if r.random() < rate:
            nxt = next((l for l in lines[i:] if l.strip()), "")
            indent = nxt[:len(nxt) - len(nxt.lstrip(" \t"))] if lang in ("python", "c", "shell") else ""
            content, local = fill(r.choice(templates), r)
            if lang == "c" and indent and content.startswith("#"):
                indent = ""
            if r.random() < 0.1 and not content.lstrip().startswith(("#", "/", "*")):
                content = f"{content}  {COMMENT[lang]} {r.choice(['FIXME', 'temporary', 'do not commit', 'prod'])}"
            start = pos + len(indent)
            spans += [(start + a, start + b, lab) for a, b, lab in local]
            piece = indent + content + "\n"
            out.append(piece)
            pos += len(piece)
        out.append(line)
        pos += len(line)
    # Addresses already in the text (found after insertion, so offsets are final).
    result = "".join(out)
    taken = [(a, b) for a, b, _ in spans]
    for a, b, lab in existing_spans(result):
        if not any(a < tb and ta < b for ta, tb in taken):
            spans.append((a, b, lab))
    spans.sort()
    return result, spans


# ----------------------------------------------------------------------------- tokens

def load_tokenizer():
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(str(TOKENIZER))
    vocab = json.loads(TOKENIZER.read_text())
    # GPT-2's byte <-> printable character map.
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    char_to_byte = {chr(c): b for b, c in zip(bs, cs)}
    size = tok.get_vocab_size(with_added_tokens=True)
    lengths = np.zeros(size, dtype=np.int64)
    for t, i in vocab["model"]["vocab"].items():
        lengths[i] = len(bytes(char_to_byte[c] for c in t))
    for a in vocab["added_tokens"]:
        lengths[a["id"]] = len(a["content"].encode())
    return tok, lengths


def token_labels(text: str, spans, tok, lengths) -> tuple[np.ndarray, np.ndarray]:
    """Ids of `text` and the label of each token: that of the secret its bytes overlap, else O."""
    ids = np.array(tok.encode(text, add_special_tokens=False).ids, dtype=np.int64)
    ends = np.cumsum(lengths[ids])
    starts = ends - lengths[ids]
    data = text.encode()
    assert ends[-1] == len(data), "token byte lengths must add up to the text"
    labels = np.zeros(len(ids), dtype=np.int64)
    char_to_byte = None
    if len(data) != len(text):
        char_to_byte = np.cumsum([0] + [len(c.encode()) for c in text])
    for a, b, lab in spans:
        if char_to_byte is not None:
            a, b = int(char_to_byte[a]), int(char_to_byte[b])
        lo = np.searchsorted(ends, a, side="right")
        hi = np.searchsorted(starts, b, side="left")
        labels[lo:hi] = LABELS.index(lab)
    return ids, labels


def delayed_stream(ids: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The file's ids followed by DELAY <|endoftext|>, and the label each position predicts (-1: none)."""
    stream = np.concatenate([ids, np.full(DELAY, EOS, dtype=ids.dtype)])
    targets = np.full(len(stream), IGNORE, dtype=np.int64)
    targets[DELAY:] = labels
    return stream, targets


# ----------------------------------------------------------------------------- datasets

def tagger_data(groups, tok, lengths, args):
    train_ids, train_targets = [], []
    eval_ids, eval_lengths, eval_gold, eval_lang = [], [], [], []
    counts = {"train_files": 0, "eval_files": 0, "train_spans": {l: 0 for l in LABELS[1:]},
              "eval_spans": {l: 0 for l in LABELS[1:]}}
    rates = {"python": 0.07, "c": 0.07, "shell": 0.1, "other": 0.08}
    eval_quota = {"python": 60, "c": 36, "shell": 36, "other": 18}
    r_eval = random.Random(7)
    for lang in LANGS:
        sources = groups[lang]
        if lang == "other":  # config-like and prose files only
            sources = [s for s in sources if s.path.suffix in (".toml", ".cfg", ".ini", ".md", ".txt", ".rst", ".1")]
        train = [s for s in sources if not held_out(s.key)]
        held = [s for s in sources if held_out(s.key)]
        for epoch in range(args.epochs):
            r = random.Random(f"{args.seed}-{lang}-{epoch}")
            for s in train:
                text = read(s.path, args.max_chars)
                if text is None:
                    continue
                text, spans = insert_secrets(text, lang, r, rates[lang] * r.uniform(0.5, 1.5))
                ids, labels = token_labels(text, spans, tok, lengths)
                stream, targets = delayed_stream(ids, labels)
                shift = r.randrange(CHUNK) if len(stream) > 2 * CHUNK and r.random() < 0.5 else 0
                for start in range(shift if shift < len(stream) - CHUNK else 0, len(stream), CHUNK):
                    piece, tgt = stream[start:start + CHUNK], targets[start:start + CHUNK]
                    if len(piece) < 64:
                        continue
                    pad = CHUNK - len(piece)
                    train_ids.append(np.pad(piece, (0, pad), constant_values=EOS))
                    train_targets.append(np.pad(tgt, (0, pad), constant_values=IGNORE))
                if epoch == 0:
                    counts["train_files"] += 1
                for _, _, lab in spans:
                    counts["train_spans"][lab] += 1
        # Held-out chunks: consecutive windows of CHUNK positions with stride CHUNK - DELAY, so that each token
        # is scored once (its label is read DELAY positions later); at most 3 chunks a file.
        r = random.Random(f"{args.seed}-{lang}-eval")
        order = held[:]
        r_eval.shuffle(order)
        taken = 0
        for s in order:
            if taken >= eval_quota[lang]:
                break
            text = read(s.path, args.max_chars)
            if text is None:
                continue
            text, spans = insert_secrets(text, lang, r, rates[lang])
            ids, labels = token_labels(text, spans, tok, lengths)
            stream, _ = delayed_stream(ids, labels)
            counts["eval_files"] += 1
            for k, start in enumerate(range(0, len(ids), CHUNK - DELAY)):
                if k == 3 or taken >= eval_quota[lang]:
                    break
                piece = stream[start:start + CHUNK]
                gold = labels[start:start + len(piece) - DELAY]
                eval_ids.append(piece)
                eval_lengths.append(len(piece))
                eval_gold.append(gold)
                eval_lang.append(LANGS.index(lang))
                for g in spans_of(gold):
                    counts["eval_spans"][LABELS[g[2]]] += 1
                taken += 1
    perm = np.random.default_rng(args.seed).permutation(len(train_ids))
    return {
        "train_ids": np.stack(train_ids)[perm].astype(np.int16),
        "train_targets": np.stack(train_targets)[perm].astype(np.int8),
        "eval_ids": np.concatenate(eval_ids).astype(np.int16),
        "eval_lengths": np.array(eval_lengths, dtype=np.int32),
        "eval_gold": np.concatenate(eval_gold).astype(np.uint8),
        "eval_lang": np.array(eval_lang, dtype=np.uint8),
    }, counts


def spans_of(labels) -> list[tuple[int, int, int]]:
    """Maximal runs [begin, end) of equal non-O labels."""
    out, t = [], 0
    labels = list(labels)
    while t < len(labels):
        if labels[t] == 0:
            t += 1
            continue
        u = t
        while u < len(labels) and labels[u] == labels[t]:
            u += 1
        out.append((t, u, int(labels[t])))
        t = u
    return out


def langid_data(groups, tok, args):
    groups = {**groups, "c": groups["c"] + example_c_sources()}
    train, train_labels, evals, eval_labels = [], [], [], []
    counts = {}
    eval_per_class = 50
    for li, lang in enumerate(LANGS):
        r = random.Random(f"{args.seed}-langid-{lang}")
        n_train = n_eval = 0
        held = []
        for s in groups[lang]:
            text = read(s.path, 64 * 1024)
            if text is None:
                continue
            ids = tok.encode(text, add_special_tokens=False).ids
            if held_out(s.key):
                held.append(ids[:LANGID_TOKENS])
                continue
            n_train += 1
            train.append(ids[:LANGID_TOKENS])
            train_labels.append(li)
            for _ in range(2 if len(ids) > 2 * LANGID_TOKENS else 1 if len(ids) > LANGID_TOKENS else 0):
                n = r.randint(32, LANGID_TOKENS)
                start = r.randrange(0, len(ids) - n)
                train.append(ids[start:start + n])
                train_labels.append(li)
        r.shuffle(held)
        for ids in held[:eval_per_class]:
            evals.append(ids)
            eval_labels.append(li)
            n_eval += 1
        counts[lang] = {"train_files": n_train, "held_out_files": len(held), "eval_examples": n_eval}

    def flat(seqs):
        offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(s) for s in seqs])
        return np.concatenate([np.array(s, dtype=np.int16) for s in seqs]), offsets

    ti, to = flat(train)
    ei, eo = flat(evals)
    return {"train_ids": ti, "train_offsets": to, "train_labels": np.array(train_labels, dtype=np.uint8),
            "eval_ids": ei, "eval_offsets": eo, "eval_labels": np.array(eval_labels, dtype=np.uint8)}, counts


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=pathlib.Path, default=ROOT / ".tagdata")
    p.add_argument("--epochs", type=int, default=2, help="tagger: passes over the training files, fresh secrets each")
    p.add_argument("--max-chars", type=int, default=20000, help="tagger: characters read from the start of a file")
    p.add_argument("--seed", type=int, default=2024)
    p.add_argument("--only", choices=["langid"], help="rewrite langid.npz only (tagger.npz is kept)")
    args = p.parse_args()
    tok, lengths = load_tokenizer()
    groups = all_sources()
    licenses = {lang: sorted({s.license for s in ss}) for lang, ss in groups.items()}
    licenses["c (language ID)"] = sorted({s.license for s in groups["c"] + example_c_sources()})
    print({lang: (len(ss), sum(held_out(s.key) for s in ss)) for lang, ss in groups.items()}, licenses, flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.only != "langid":
        tagger, tagger_counts = tagger_data(groups, tok, lengths, args)
        np.savez_compressed(args.out / "tagger.npz", **tagger)
    else:  # the tagger's data as written before
        tagger = dict(np.load(args.out / "tagger.npz"))
        tagger_counts = json.loads((args.out / "summary.json").read_text())["tagger"]
    langid, langid_counts = langid_data(groups, tok, args)
    np.savez_compressed(args.out / "langid.npz", **langid)
    summary = {
        "labels": LABELS, "placeholders": PLACEHOLDERS, "langs": LANGS, "label_delay": DELAY, "chunk": CHUNK,
        "langid_tokens": LANGID_TOKENS, "held_out_percent": HELD_OUT_PERCENT,
        "files": {lang: {"total": len(ss), "held_out": sum(held_out(s.key) for s in ss), "licenses": licenses[lang]}
                  for lang, ss in groups.items()},
        "example_c_files_language_id": {"total": len(example_c_sources()),
                                         "held_out": sum(held_out(s.key) for s in example_c_sources()),
                                         "licenses": licenses["c (language ID)"]},
        "tagger": {**tagger_counts, "train_chunks": int(len(tagger["train_ids"])),
                   "train_tokens_labelled": int((tagger["train_targets"] >= 0).sum()),
                   "train_label_tokens": {l: int((tagger["train_targets"] == i).sum()) for i, l in enumerate(LABELS)},
                   "eval_chunks": int(len(tagger["eval_lengths"])), "eval_tokens": int(len(tagger["eval_gold"]))},
        "langid": {**langid_counts, "train_examples": int(len(langid["train_labels"])),
                   "eval_examples": int(len(langid["eval_labels"]))},
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
