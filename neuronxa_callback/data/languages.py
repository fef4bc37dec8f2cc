"""Language-code tables: FLORES-style codes (``isl_Latn``) are the canonical form everywhere.

Usage::

    from neuronxa_callback.data.languages import normalize_language, language_name
    normalize_language("isl")      # -> "isl_Latn"  (ISO 639-3, default script)
    normalize_language("is")       # -> "isl_Latn"  (ISO 639-1)
    normalize_language("zho-CN")   # -> "zho_Hans"  (NTREX-128 file code)
    normalize_language("ISL_latn") # -> "isl_Latn"  (any casing, '-' or '_')
    language_name("isl_Latn")      # -> "Icelandic"

A FLORES-style code (three letters, '_' or '-', four-letter script) is accepted even when it is not in
these tables (FLORES+ keeps adding languages); bare ISO codes must be in the tables because the
script cannot be guessed.
"""

from __future__ import annotations

import re

__all__ = [
    "FLORES200_CODES",
    "ISO639_3_DEFAULTS",
    "ISO639_1",
    "NTREX_CODES",
    "FLORES_PLUS_ALIASES",
    "LanguageCodeError",
    "normalize_language",
    "language_name",
]


class LanguageCodeError(ValueError):
    """A language code that is neither FLORES-style nor a known ISO 639-1/639-3/NTREX code."""


# The 204 language varieties of FLORES-200 (NLLB Team, 2022).
FLORES200_CODES: tuple[str, ...] = tuple(
    """
    ace_Arab ace_Latn acm_Arab acq_Arab aeb_Arab afr_Latn ajp_Arab aka_Latn amh_Ethi apc_Arab arb_Arab arb_Latn
    ars_Arab ary_Arab arz_Arab asm_Beng ast_Latn awa_Deva ayr_Latn azb_Arab azj_Latn bak_Cyrl bam_Latn ban_Latn
    bel_Cyrl bem_Latn ben_Beng bho_Deva bjn_Arab bjn_Latn bod_Tibt bos_Latn bug_Latn bul_Cyrl cat_Latn ceb_Latn
    ces_Latn cjk_Latn ckb_Arab crh_Latn cym_Latn dan_Latn deu_Latn dik_Latn dyu_Latn dzo_Tibt ell_Grek eng_Latn
    epo_Latn est_Latn eus_Latn ewe_Latn fao_Latn fij_Latn fin_Latn fon_Latn fra_Latn fur_Latn fuv_Latn gaz_Latn
    gla_Latn gle_Latn glg_Latn grn_Latn guj_Gujr hat_Latn hau_Latn heb_Hebr hin_Deva hne_Deva hrv_Latn hun_Latn
    hye_Armn ibo_Latn ilo_Latn ind_Latn isl_Latn ita_Latn jav_Latn jpn_Jpan kab_Latn kac_Latn kam_Latn kan_Knda
    kas_Arab kas_Deva kat_Geor kaz_Cyrl kbp_Latn kea_Latn khk_Cyrl khm_Khmr kik_Latn kin_Latn kir_Cyrl kmb_Latn
    kmr_Latn knc_Arab knc_Latn kon_Latn kor_Hang lao_Laoo lij_Latn lim_Latn lin_Latn lit_Latn lmo_Latn ltg_Latn
    ltz_Latn lua_Latn lug_Latn luo_Latn lus_Latn lvs_Latn mag_Deva mai_Deva mal_Mlym mar_Deva min_Arab min_Latn
    mkd_Cyrl mlt_Latn mni_Beng mos_Latn mri_Latn mya_Mymr nld_Latn nno_Latn nob_Latn npi_Deva nso_Latn nus_Latn
    nya_Latn oci_Latn ory_Orya pag_Latn pan_Guru pap_Latn pbt_Arab pes_Arab plt_Latn pol_Latn por_Latn prs_Arab
    quy_Latn ron_Latn run_Latn rus_Cyrl sag_Latn san_Deva sat_Olck scn_Latn shn_Mymr sin_Sinh slk_Latn slv_Latn
    smo_Latn sna_Latn snd_Arab som_Latn sot_Latn spa_Latn als_Latn srd_Latn srp_Cyrl ssw_Latn sun_Latn swe_Latn
    swh_Latn szl_Latn tam_Taml taq_Latn taq_Tfng tat_Cyrl tel_Telu tgk_Cyrl tgl_Latn tha_Thai tir_Ethi tpi_Latn
    tsn_Latn tso_Latn tuk_Latn tum_Latn tur_Latn twi_Latn tzm_Tfng uig_Arab ukr_Cyrl umb_Latn urd_Arab uzn_Latn
    vec_Latn vie_Latn war_Latn wol_Latn xho_Latn ydd_Hebr yor_Latn yue_Hant zho_Hans zho_Hant zsm_Latn zul_Latn
    """.split()
)

# Languages with several scripts in FLORES-200: which one a bare ISO 639-3 code means.
_PREFERRED_SCRIPT = {
    "ace": "ace_Latn",
    "arb": "arb_Arab",
    "bjn": "bjn_Latn",
    "kas": "kas_Arab",
    "knc": "knc_Latn",
    "min": "min_Latn",
    "taq": "taq_Latn",
    "zho": "zho_Hans",
}

# ISO 639-3 macrolanguage (or common) codes whose FLORES-200 entry uses an individual-language code.
_MACROLANGUAGE = {
    "ara": "arb_Arab",
    "aze": "azj_Latn",
    "est": "est_Latn",
    "fas": "pes_Arab",
    "per": "pes_Arab",
    "kur": "kmr_Latn",
    "lav": "lvs_Latn",
    "mlg": "plt_Latn",
    "mon": "khk_Cyrl",
    "msa": "zsm_Latn",
    "may": "zsm_Latn",
    "nep": "npi_Deva",
    "nor": "nob_Latn",
    "orm": "gaz_Latn",
    "pus": "pbt_Arab",
    "sqi": "als_Latn",
    "alb": "als_Latn",
    "swa": "swh_Latn",
    "uzb": "uzn_Latn",
    "yid": "ydd_Hebr",
    "fil": "tgl_Latn",
    "cmn": "zho_Hans",
    "chi": "zho_Hans",
    "ger": "deu_Latn",
    "fre": "fra_Latn",
    "ice": "isl_Latn",
    "dut": "nld_Latn",
    "gre": "ell_Grek",
    "cze": "ces_Latn",
    "grn": "grn_Latn",
    "kon": "kon_Latn",
    "div": "div_Thaa",
    "shi": "shi_Arab",
    "mey": "mey_Arab",
    "hmn": "hmn_Latn",
    "tah": "tah_Latn",
    "ton": "ton_Latn",
    "ven": "ven_Latn",
    "nde": "nde_Latn",
    "fuc": "fuc_Latn",
}


def _iso3_defaults() -> dict[str, str]:
    table: dict[str, str] = {}
    for code in FLORES200_CODES:
        table.setdefault(code.split("_")[0], code)
    table.update(_PREFERRED_SCRIPT)
    for iso, code in _MACROLANGUAGE.items():
        table.setdefault(iso, code)
    return table


# ISO 639-3 code -> FLORES-style code with the language's default script.
ISO639_3_DEFAULTS: dict[str, str] = _iso3_defaults()

# ISO 639-1 (two-letter) codes of widely used languages.
ISO639_1: dict[str, str] = {
    "af": "afr_Latn",
    "am": "amh_Ethi",
    "ar": "arb_Arab",
    "az": "azj_Latn",
    "be": "bel_Cyrl",
    "bg": "bul_Cyrl",
    "bn": "ben_Beng",
    "bs": "bos_Latn",
    "ca": "cat_Latn",
    "cs": "ces_Latn",
    "cy": "cym_Latn",
    "da": "dan_Latn",
    "de": "deu_Latn",
    "el": "ell_Grek",
    "en": "eng_Latn",
    "eo": "epo_Latn",
    "es": "spa_Latn",
    "et": "est_Latn",
    "eu": "eus_Latn",
    "fa": "pes_Arab",
    "fi": "fin_Latn",
    "fo": "fao_Latn",
    "fr": "fra_Latn",
    "ga": "gle_Latn",
    "gd": "gla_Latn",
    "gl": "glg_Latn",
    "gu": "guj_Gujr",
    "ha": "hau_Latn",
    "he": "heb_Hebr",
    "hi": "hin_Deva",
    "hr": "hrv_Latn",
    "ht": "hat_Latn",
    "hu": "hun_Latn",
    "hy": "hye_Armn",
    "id": "ind_Latn",
    "ig": "ibo_Latn",
    "is": "isl_Latn",
    "it": "ita_Latn",
    "ja": "jpn_Jpan",
    "jv": "jav_Latn",
    "ka": "kat_Geor",
    "kk": "kaz_Cyrl",
    "km": "khm_Khmr",
    "kn": "kan_Knda",
    "ko": "kor_Hang",
    "ky": "kir_Cyrl",
    "lb": "ltz_Latn",
    "lo": "lao_Laoo",
    "lt": "lit_Latn",
    "lv": "lvs_Latn",
    "mg": "plt_Latn",
    "mi": "mri_Latn",
    "mk": "mkd_Cyrl",
    "ml": "mal_Mlym",
    "mn": "khk_Cyrl",
    "mr": "mar_Deva",
    "ms": "zsm_Latn",
    "mt": "mlt_Latn",
    "my": "mya_Mymr",
    "nb": "nob_Latn",
    "ne": "npi_Deva",
    "nl": "nld_Latn",
    "nn": "nno_Latn",
    "no": "nob_Latn",
    "ny": "nya_Latn",
    "pa": "pan_Guru",
    "pl": "pol_Latn",
    "ps": "pbt_Arab",
    "pt": "por_Latn",
    "ro": "ron_Latn",
    "ru": "rus_Cyrl",
    "rw": "kin_Latn",
    "si": "sin_Sinh",
    "sk": "slk_Latn",
    "sl": "slv_Latn",
    "sn": "sna_Latn",
    "so": "som_Latn",
    "sq": "als_Latn",
    "sr": "srp_Cyrl",
    "sv": "swe_Latn",
    "sw": "swh_Latn",
    "ta": "tam_Taml",
    "te": "tel_Telu",
    "tg": "tgk_Cyrl",
    "th": "tha_Thai",
    "tl": "tgl_Latn",
    "tr": "tur_Latn",
    "tt": "tat_Cyrl",
    "ug": "uig_Arab",
    "uk": "ukr_Cyrl",
    "ur": "urd_Arab",
    "uz": "uzn_Latn",
    "vi": "vie_Latn",
    "xh": "xho_Latn",
    "yi": "ydd_Hebr",
    "yo": "yor_Latn",
    "zh": "zho_Hans",
    "zu": "zul_Latn",
}

# NTREX-128 file codes (newstest2019-ref.<code>.txt) -> FLORES-style codes. English is the source file
# (newstest2019-src.eng.txt); the eng-GB/eng-IN/eng-US, fra-CA, por-BR and spa-MX variants are left out
# because they would share a FLORES code with the main file of their language.
NTREX_CODES: dict[str, str] = {
    "afr": "afr_Latn",
    "amh": "amh_Ethi",
    "arb": "arb_Arab",
    "aze-Latn": "azj_Latn",
    "bak": "bak_Cyrl",
    "bel": "bel_Cyrl",
    "bem": "bem_Latn",
    "ben": "ben_Beng",
    "bod": "bod_Tibt",
    "bos": "bos_Latn",
    "bul": "bul_Cyrl",
    "cat": "cat_Latn",
    "ces": "ces_Latn",
    "ckb-Arab": "ckb_Arab",
    "cym": "cym_Latn",
    "dan": "dan_Latn",
    "deu": "deu_Latn",
    "div": "div_Thaa",
    "dzo": "dzo_Tibt",
    "ell": "ell_Grek",
    "est": "est_Latn",
    "eus": "eus_Latn",
    "ewe": "ewe_Latn",
    "fao": "fao_Latn",
    "fas": "pes_Arab",
    "fij": "fij_Latn",
    "fil": "tgl_Latn",
    "fin": "fin_Latn",
    "fra": "fra_Latn",
    "fuc": "fuc_Latn",
    "gle": "gle_Latn",
    "glg": "glg_Latn",
    "guj": "guj_Gujr",
    "hau": "hau_Latn",
    "heb": "heb_Hebr",
    "hin": "hin_Deva",
    "hmn": "hmn_Latn",
    "hrv": "hrv_Latn",
    "hun": "hun_Latn",
    "hye": "hye_Armn",
    "ibo": "ibo_Latn",
    "ind": "ind_Latn",
    "isl": "isl_Latn",
    "ita": "ita_Latn",
    "jpn": "jpn_Jpan",
    "kan": "kan_Knda",
    "kat": "kat_Geor",
    "kaz": "kaz_Cyrl",
    "khm": "khm_Khmr",
    "kin": "kin_Latn",
    "kir": "kir_Cyrl",
    "kmr": "kmr_Latn",
    "kor": "kor_Hang",
    "lao": "lao_Laoo",
    "lav": "lvs_Latn",
    "lit": "lit_Latn",
    "ltz": "ltz_Latn",
    "mal": "mal_Mlym",
    "mar": "mar_Deva",
    "mey": "mey_Arab",
    "mkd": "mkd_Cyrl",
    "mlg": "plt_Latn",
    "mlt": "mlt_Latn",
    "mon": "khk_Cyrl",
    "mri": "mri_Latn",
    "msa": "zsm_Latn",
    "mya": "mya_Mymr",
    "nde": "nde_Latn",
    "nep": "npi_Deva",
    "nld": "nld_Latn",
    "nno": "nno_Latn",
    "nob": "nob_Latn",
    "nso": "nso_Latn",
    "nya": "nya_Latn",
    "orm": "gaz_Latn",
    "pan": "pan_Guru",
    "pol": "pol_Latn",
    "por": "por_Latn",
    "prs": "prs_Arab",
    "pus": "pbt_Arab",
    "ron": "ron_Latn",
    "rus": "rus_Cyrl",
    "shi": "shi_Arab",
    "sin": "sin_Sinh",
    "slk": "slk_Latn",
    "slv": "slv_Latn",
    "smo": "smo_Latn",
    "sna-Latn": "sna_Latn",
    "snd-Arab": "snd_Arab",
    "som": "som_Latn",
    "spa": "spa_Latn",
    "sqi": "als_Latn",
    "srp-Cyrl": "srp_Cyrl",
    "srp-Latn": "srp_Latn",
    "ssw": "ssw_Latn",
    "swa": "swh_Latn",
    "swe": "swe_Latn",
    "tah": "tah_Latn",
    "tam": "tam_Taml",
    "tat": "tat_Cyrl",
    "tel": "tel_Telu",
    "tgk-Cyrl": "tgk_Cyrl",
    "tha": "tha_Thai",
    "tir": "tir_Ethi",
    "ton": "ton_Latn",
    "tsn": "tsn_Latn",
    "tuk": "tuk_Latn",
    "tur": "tur_Latn",
    "uig": "uig_Arab",
    "ukr": "ukr_Cyrl",
    "urd": "urd_Arab",
    "uzb": "uzn_Latn",
    "ven": "ven_Latn",
    "vie": "vie_Latn",
    "wol": "wol_Latn",
    "xho": "xho_Latn",
    "yor": "yor_Latn",
    "yue": "yue_Hant",
    "zho-CN": "zho_Hans",
    "zho-TW": "zho_Hant",
    "zul": "zul_Latn",
}

# FLORES+ (openlanguagedata/flores_plus) renamed a few FLORES-200 configs.
FLORES_PLUS_ALIASES: dict[str, str] = {"zho_Hans": "cmn_Hans", "zho_Hant": "cmn_Hant"}

_NAMES = {
    "afr": "Afrikaans",
    "amh": "Amharic",
    "arb": "Arabic",
    "azj": "Azerbaijani",
    "bel": "Belarusian",
    "ben": "Bengali",
    "bos": "Bosnian",
    "bul": "Bulgarian",
    "cat": "Catalan",
    "ces": "Czech",
    "cym": "Welsh",
    "dan": "Danish",
    "deu": "German",
    "ell": "Greek",
    "eng": "English",
    "epo": "Esperanto",
    "est": "Estonian",
    "eus": "Basque",
    "fao": "Faroese",
    "fin": "Finnish",
    "fra": "French",
    "gle": "Irish",
    "glg": "Galician",
    "guj": "Gujarati",
    "hau": "Hausa",
    "heb": "Hebrew",
    "hin": "Hindi",
    "hrv": "Croatian",
    "hun": "Hungarian",
    "hye": "Armenian",
    "ind": "Indonesian",
    "isl": "Icelandic",
    "ita": "Italian",
    "jpn": "Japanese",
    "kat": "Georgian",
    "kaz": "Kazakh",
    "khm": "Khmer",
    "kor": "Korean",
    "lit": "Lithuanian",
    "ltz": "Luxembourgish",
    "lvs": "Latvian",
    "mal": "Malayalam",
    "mar": "Marathi",
    "mkd": "Macedonian",
    "mlt": "Maltese",
    "mri": "Maori",
    "mya": "Burmese",
    "nld": "Dutch",
    "nno": "Norwegian Nynorsk",
    "nob": "Norwegian Bokmål",
    "npi": "Nepali",
    "pan": "Punjabi",
    "pbt": "Pashto",
    "pes": "Persian",
    "pol": "Polish",
    "por": "Portuguese",
    "ron": "Romanian",
    "rus": "Russian",
    "sin": "Sinhala",
    "slk": "Slovak",
    "slv": "Slovenian",
    "som": "Somali",
    "spa": "Spanish",
    "als": "Albanian",
    "srp": "Serbian",
    "swe": "Swedish",
    "swh": "Swahili",
    "tam": "Tamil",
    "tel": "Telugu",
    "tgl": "Tagalog",
    "tha": "Thai",
    "tur": "Turkish",
    "ukr": "Ukrainian",
    "urd": "Urdu",
    "uzn": "Uzbek",
    "vie": "Vietnamese",
    "xho": "Xhosa",
    "yor": "Yoruba",
    "yue": "Cantonese",
    "zsm": "Malay",
    "zul": "Zulu",
}
_SCRIPT_NAMES = {
    "zho_Hans": "Chinese (Simplified)",
    "zho_Hant": "Chinese (Traditional)",
    "srp_Latn": "Serbian (Latin)",
    "srp_Cyrl": "Serbian",
}

_FLORES200_SET = frozenset(FLORES200_CODES)
_FLORES_STYLE = re.compile(r"^([A-Za-z]{3})[_-]([A-Za-z]{4})$")


def normalize_language(code: str) -> str:
    """``normalize_language("isl") -> "isl_Latn"``: canonical FLORES-style code for a language code.

    Accepts FLORES-style codes in any casing with '_' or '-', ISO 639-3 and 639-1 codes of the tables
    above, and NTREX-128 file codes such as ``zho-CN``. Raises LanguageCodeError otherwise.
    """
    if not isinstance(code, str) or not code.strip():
        raise LanguageCodeError(f"language code must be a non-empty string, got {code!r}")
    text = code.strip()
    if text in NTREX_CODES and not _FLORES_STYLE.match(text):
        return NTREX_CODES[text]
    match = _FLORES_STYLE.match(text)
    if match:
        canonical = f"{match.group(1).lower()}_{match.group(2).title()}"
        # "aze_Latn" (macrolanguage) means FLORES-200's "azj_Latn" when the script agrees.
        alias = _MACROLANGUAGE.get(match.group(1).lower())
        if canonical not in _FLORES200_SET and alias and alias.endswith(canonical[3:]):
            return alias
        return canonical
    lower = text.lower()
    if lower in ISO639_3_DEFAULTS:
        return ISO639_3_DEFAULTS[lower]
    if lower in ISO639_1:
        return ISO639_1[lower]
    for ntrex_code, flores in NTREX_CODES.items():
        if ntrex_code.lower() == lower:
            return flores
    raise LanguageCodeError(
        f"unknown language code {code!r}: use a FLORES-style code with its script, e.g. 'isl_Latn', "
        f"'zho_Hans', or an ISO 639-3 code of a FLORES-200 language, e.g. 'isl'"
    )


def language_name(code: str) -> str:
    """``language_name("isl_Latn") -> "Icelandic"`` (falls back to the code itself when unknown)."""
    canonical = normalize_language(code)
    if canonical in _SCRIPT_NAMES:
        return _SCRIPT_NAMES[canonical]
    if canonical == "zho_Hans" or canonical.startswith("zho_"):
        return "Chinese"
    return _NAMES.get(canonical.split("_")[0], canonical)
