"""The prompt catalog: `prompts/<lang>.toml` loaded once, prompts rendered to spoken text."""

from __future__ import annotations

import datetime
import string
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType

from . import speech
from .state import LANGS, Digits, Localized, Money, Month, Param, Say, Term, When


class CatalogError(ValueError):
    """A prompt file is missing, malformed or inconsistent with the others."""


@dataclass(frozen=True, slots=True)
class Voice:
    """How a language is spoken: TTS voice name and language code."""

    language: str
    voice: str


@dataclass(frozen=True, slots=True)
class Segment:
    """A piece of text to speak in one voice."""

    text: str
    voice: Voice


@dataclass(frozen=True, slots=True)
class Prompt:
    """One prompt template: its text and the language it is spoken in."""

    text: str
    language: str

    def placeholders(self) -> set[str]:
        """The named placeholders of the template."""
        return {f for _, f, _, _ in string.Formatter().parse(self.text) if f}


@dataclass(frozen=True, slots=True)
class Catalog:
    """All prompts of all languages, and their voices."""

    prompts: Mapping[str, Mapping[str, Prompt]]
    voices: Mapping[str, Voice]

    def render(
        self, say: Say, lang: str, today: datetime.date, zone: datetime.tzinfo | None = None
    ) -> Segment:
        """The text of one prompt in `lang`, placeholders filled in and read out as words
        (times in `zone`, the hotline's time zone)."""
        prompt = self.prompt(say.key, lang)
        values = {name: self._value(value, lang, today, zone) for name, value in say.params}
        try:
            text = prompt.text.format_map(values)
        except KeyError as exc:
            raise CatalogError(f"prompt {say.key} ({lang}): no value for {exc}") from None
        return Segment(text, self.voices[prompt.language])

    def prompt(self, key: str, lang: str) -> Prompt:
        """The template of one prompt; CatalogError if there is none."""
        try:
            return self.prompts[lang][key]
        except KeyError:
            raise CatalogError(f"no prompt {key!r} in {lang}") from None

    def _value(
        self, value: Param, lang: str, today: datetime.date, zone: datetime.tzinfo | None
    ) -> str:
        match value:
            case Money(amount):
                return speech.money(amount, lang)
            case When(iso, with_time):
                moment = datetime.datetime.fromisoformat(iso)
                if zone is not None and moment.tzinfo is not None:
                    moment = moment.astimezone(zone)
                text = speech.date(moment, lang, today)
                return f"{text} {speech.time_of_day(moment, lang)}" if with_time else text
            case Month(ym):
                return speech.month(ym, lang, today)
            case Term(key):
                return self.prompt(key, lang).text
            case Digits(digits):
                return speech.digits(digits, lang)
            case Localized():
                return value.get(lang)
            case int():
                return speech.integer(value, lang) if lang == "en-US" else str(value)
            case _:
                return str(value)


def load(files: Mapping[str, str] | None = None) -> Catalog:
    """Load and cross-check the prompt files (the packaged ones by default)."""
    if files is None:
        folder = resources.files("ivr.prompts")
        files = {lang: folder.joinpath(f"{lang}.toml").read_text("utf-8") for lang in LANGS}
    prompts: dict[str, Mapping[str, Prompt]] = {}
    voices: dict[str, Voice] = {}
    for lang, text in files.items():
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise CatalogError(f"prompts/{lang}.toml is not valid TOML: {exc}") from None
        meta = raw.get("meta", {})
        if meta.get("language") != lang or not meta.get("voice"):
            raise CatalogError(f"prompts/{lang}.toml: [meta] needs language = {lang!r} and voice")
        voices[lang] = Voice(lang, meta["voice"])
        prompts[lang] = MappingProxyType(
            {key: _prompt(lang, key, value) for key, value in raw.get("prompts", {}).items()}
        )
    catalog = Catalog(MappingProxyType(prompts), MappingProxyType(voices))
    check(catalog)
    return catalog


def _prompt(lang: str, key: str, value: object) -> Prompt:
    if isinstance(value, str):
        prompt = Prompt(value, lang)
    elif isinstance(value, dict) and isinstance(value.get("text"), str):
        prompt = Prompt(value["text"], str(value.get("language", lang)))
    else:
        raise CatalogError(f"prompts/{lang}.toml: {key} must be text or {{text, language}}")
    # A stray brace or an unnamed {} would otherwise fail mid-call, as a bare ValueError.
    try:
        names = [f for _, f, _, _ in string.Formatter().parse(prompt.text) if f is not None]
    except ValueError as exc:
        raise CatalogError(f"prompts/{lang}.toml: {key}: {exc}") from None
    if not all(name.isidentifier() for name in names):
        raise CatalogError(f"prompts/{lang}.toml: {key}: placeholders must be {{named}}")
    return prompt


def check(catalog: Catalog) -> None:
    """Raise CatalogError unless every language has the same keys with the same placeholders."""
    langs = sorted(catalog.prompts)
    if not langs:
        raise CatalogError("no prompt files")
    first = catalog.prompts[langs[0]]
    for lang in langs:
        table = catalog.prompts[lang]
        for key in set(first) ^ set(table):
            where = lang if key not in table else langs[0]
            raise CatalogError(f"prompt {key!r} is missing from {where}")
        for key, prompt in table.items():
            if prompt.language not in catalog.voices:
                raise CatalogError(f"prompt {key} ({lang}): no voice for {prompt.language}")
            if prompt.placeholders() != first[key].placeholders():
                raise CatalogError(f"prompt {key}: placeholders differ between languages")
