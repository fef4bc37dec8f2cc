"""Language fidelity: which language each hypothesis is written in, and the share in the wrong one (off-target rate).

    from neuronxa_callback.quality.language_id import identify_languages

    report = identify_languages(["Safnið er lokað á mánudögum.", "Das Museum ist montags geschlossen.", ""], expected="isl_Latn")
    report.detected     # ("isl_Latn", "deu_Latn", None)   FLORES-style codes; None: nothing to identify
    report.off_target   # (False, True, None)              None: not judged (empty, or a language it does not know)
    report.rate         # 0.5: off-target among the judged hypotheses; None when none could be judged
    report.to_dict()    # {"off_target": 1, "off_target_rate": 0.5, "language_judged": 2, "language_id": "py3langid 0.4.0"}

A model asked to translate into Icelandic often answers in English, in its source language, or in a related
language it knows better: chrF and COMET then fall without saying why. The off-target rate says it. The identifier is
py3langid (a Naive Bayes model over byte n-grams, 140 labels, shipped inside its 4.5 MB wheel: nothing is downloaded);
on NTREX-128 it identified 99.7% of 3,400 sentences of 17 languages correctly (bench/bench_language_id.py).

A hypothesis is judged only when it has a letter in it and the identifier knows the expected language
(``IDENTIFIER_LANGUAGES``; ``knows(code)``). A language it does not know is said once and marked "unknown"
(``report.known`` is False, every ``off_target`` None, ``rate`` None): never off-target. Languages are compared without
their script (``srp_Latn`` answered in Cyrillic is on target) and the Arabic varieties the identifier separates
(``ary``, ``arz``) count as Arabic. When py3langid is not installed every value is None and one warning names
the install line.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["IDENTIFIER_LANGUAGES", "LanguageReport", "identify_languages", "knows"]

logger = logging.getLogger("neuronxa_callback")  # the package's user-facing logger

INSTALL_LINE = "pip install 'py3langid>=0.4'"

# py3langid 0.4 label -> the FLORES-style code of the language it stands for (FLORES-200's code where it has the
# language, ISO 639-3 with the usual script otherwise). "zxx" (no linguistic content) is not a language: None.
IDENTIFIER_LANGUAGES: dict[str, str | None] = {
    "ace": "ace_Latn", "af": "afr_Latn", "am": "amh_Ethi", "an": "arg_Latn", "ar": "arb_Arab", "ary": "ary_Arab",
    "arz": "arz_Arab", "as": "asm_Beng", "az": "azj_Latn", "ba": "bak_Cyrl", "bcl": "bcl_Latn", "be": "bel_Cyrl",
    "bg": "bul_Cyrl", "bn": "ben_Beng", "br": "bre_Latn", "bs": "bos_Latn", "ca": "cat_Latn", "crh": "crh_Latn",
    "cs": "ces_Latn", "cy": "cym_Latn", "da": "dan_Latn", "de": "deu_Latn", "dz": "dzo_Tibt", "el": "ell_Grek",
    "en": "eng_Latn", "eo": "epo_Latn", "es": "spa_Latn", "et": "est_Latn", "eu": "eus_Latn", "ext": "ext_Latn",
    "fa": "pes_Arab", "fi": "fin_Latn", "fo": "fao_Latn", "fr": "fra_Latn", "fuv": "fuv_Latn", "fy": "fry_Latn",
    "ga": "gle_Latn", "gcf": "gcf_Latn", "gcr": "gcr_Latn", "gd": "gla_Latn", "gl": "glg_Latn", "gom": "gom_Deva",
    "grc": "grc_Grek", "gu": "guj_Gujr", "gug": "grn_Latn", "guw": "guw_Latn", "ha": "hau_Latn", "hbo": "hbo_Hebr",
    "he": "heb_Hebr", "hi": "hin_Deva", "hr": "hrv_Latn", "ht": "hat_Latn", "hu": "hun_Latn", "hy": "hye_Armn",
    "id": "ind_Latn", "ig": "ibo_Latn", "is": "isl_Latn", "it": "ita_Latn", "ja": "jpn_Jpan", "jv": "jav_Latn",
    "ka": "kat_Geor", "kab": "kab_Latn", "kik": "kik_Latn", "kk": "kaz_Cyrl", "km": "khm_Khmr", "kn": "kan_Knda",
    "ko": "kor_Hang", "ku": "kmr_Latn", "ky": "kir_Cyrl", "la": "lat_Latn", "lb": "ltz_Latn", "lg": "lug_Latn",
    "lij": "lij_Latn", "ln": "lin_Latn", "lo": "lao_Laoo", "lt": "lit_Latn", "ltg": "ltg_Latn", "lv": "lvs_Latn",
    "mg": "plt_Latn", "mk": "mkd_Cyrl", "ml": "mal_Mlym", "mn": "khk_Cyrl", "mr": "mar_Deva", "ms": "zsm_Latn",
    "mt": "mlt_Latn", "my": "mya_Mymr", "ne": "npi_Deva", "nl": "nld_Latn", "nn": "nno_Latn", "no": "nob_Latn",
    "nso": "nso_Latn", "oc": "oci_Latn", "om": "gaz_Latn", "or": "ory_Orya", "pa": "pan_Guru", "pcm": "pcm_Latn",
    "pl": "pol_Latn", "ps": "pbt_Arab", "pt": "por_Latn", "qu": "quy_Latn", "ro": "ron_Latn", "ru": "rus_Cyrl",
    "rw": "kin_Latn", "sa": "san_Deva", "sdh": "sdh_Arab", "se": "sme_Latn", "si": "sin_Sinh", "sk": "slk_Latn",
    "sl": "slv_Latn", "sn": "sna_Latn", "so": "som_Latn", "sq": "als_Latn", "sr": "srp_Cyrl", "st": "sot_Latn",
    "sv": "swe_Latn", "sw": "swh_Latn", "ta": "tam_Taml", "te": "tel_Telu", "tg": "tgk_Cyrl", "th": "tha_Thai",
    "tk": "tuk_Latn", "tl": "tgl_Latn", "tr": "tur_Latn", "tt": "tat_Cyrl", "ug": "uig_Arab", "uk": "ukr_Cyrl",
    "ur": "urd_Arab", "uz": "uzn_Latn", "uzs": "uzs_Arab", "vec": "vec_Latn", "vi": "vie_Latn", "vo": "vol_Latn",
    "wa": "wln_Latn", "wuu": "wuu_Hans", "xh": "xho_Latn", "yo": "yor_Latn", "yue": "yue_Hant", "zh": "zho_Hans",
    "zu": "zul_Latn", "zxx": None,
}  # fmt: skip

# Codes of one language under two names (FLORES+ renamed a few FLORES-200 codes; ISO macrolanguages), and the
# Arabic varieties the identifier separates but a translation into Arabic may fairly be written in.
_SAME_LANGUAGE = {"cmn": "zho", "ekk": "est", "ary": "arb", "arz": "arb", "acm": "arb", "apc": "arb", "ars": "arb"}


def _language(code: str) -> str:
    """The comparable part of a FLORES-style code: its language, without the script, aliases folded."""
    language = code.split("_")[0]
    return _SAME_LANGUAGE.get(language, language)


_KNOWN = frozenset(_language(code) for code in IDENTIFIER_LANGUAGES.values() if code)


def knows(language: str) -> bool:
    """Whether the identifier can say that a text is in `language` (any code normalize_language accepts)."""
    from neuronxa_callback.data.languages import normalize_language

    return _language(normalize_language(language)) in _KNOWN


@dataclass(frozen=True)
class LanguageReport:
    """Which language each hypothesis is in (``detected``: FLORES-style codes) and whether it is off target.

    ``off_target[i]`` is None where hypothesis i was not judged: no letters in it, the identifier does not know the
    expected language (``known`` False), or no identifier is installed (``identifier`` None)."""

    expected: str
    detected: tuple[str | None, ...]
    off_target: tuple[bool | None, ...]
    known: bool
    identifier: str | None

    @property
    def judged(self) -> int:
        """How many hypotheses were judged (the rate's denominator)."""
        return sum(flag is not None for flag in self.off_target)

    @property
    def count(self) -> int:
        """How many hypotheses are in another language than the expected one."""
        return sum(flag is True for flag in self.off_target)

    @property
    def rate(self) -> float | None:
        """Off-target hypotheses among the judged ones; None when none was judged (unknown language, no identifier)."""
        return self.count / self.judged if self.judged else None

    def to_dict(self) -> dict:
        """The record's fields: off_target (count), off_target_rate, language_judged, language_id (the identifier)."""
        measured = self.identifier is not None and self.known
        name = self.identifier
        if name is not None and not self.known:
            name = f"{name} (does not know {self.expected})"
        return {
            "off_target": self.count if measured else None,
            "off_target_rate": self.rate,
            "language_judged": self.judged if measured else None,
            "language_id": name,
        }


@functools.lru_cache(maxsize=1)
def _identifier():
    """(py3langid's classifier, "py3langid <version>"), loaded once (about a second); None when not installed."""
    try:
        from importlib.metadata import version

        from py3langid.langid import MODEL_FILE, LanguageIdentifier
    except ImportError:
        logger.warning(
            "neuronxa_callback: py3langid is not installed, so off-target rates are not measured (null); "
            "install it with %s",
            INSTALL_LINE,
        )
        return None
    # A model of our own: py3langid's module-level one is shared, and set_languages() there would change ours.
    return LanguageIdentifier.from_model_file(MODEL_FILE), f"py3langid {version('py3langid')}"


@functools.cache
def _warn_unknown(expected: str) -> None:
    logger.warning(
        "neuronxa_callback: the language identifier does not know %s: its hypotheses are marked unknown, "
        "and its off-target rate is not measured (null)",
        expected,
    )


def identify_languages(texts: Sequence[str], *, expected: str) -> LanguageReport:
    """Identify the language of every text and compare it with `expected` (a language code: "isl_Latn", "is", ...).

    Empty texts and texts without a letter are not judged (detected None). Raises LanguageCodeError naming
    `expected` when it is not a language code."""
    from neuronxa_callback.data.languages import normalize_language

    if isinstance(texts, str):
        raise TypeError("identify_languages(texts=...): expected a sequence of strings, got one string")
    expected = normalize_language(expected)
    loaded = _identifier()
    known = _language(expected) in _KNOWN
    if loaded is None:
        return LanguageReport(expected, (None,) * len(texts), (None,) * len(texts), known, None)
    if not known:
        _warn_unknown(expected)
    classifier, name = loaded
    detected: list[str | None] = []
    off_target: list[bool | None] = []
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"identify_languages(texts=...): texts[{index}] is {type(text).__name__}, not a string")
        # Without a letter there is nothing to identify: the classifier would still name a language (its prior).
        language = IDENTIFIER_LANGUAGES.get(classifier.classify(text)[0]) if any(c.isalpha() for c in text) else None
        detected.append(language)
        off_target.append(None if language is None or not known else _language(language) != _language(expected))
    return LanguageReport(expected, tuple(detected), tuple(off_target), known, name)
